"""Autoregressive sampling with KV cache."""
