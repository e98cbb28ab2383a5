"""Codec language models: VALL-E (AR + NAR), single-model layouts, AudioLM stages, multitask."""
