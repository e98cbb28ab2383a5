"""Shared infrastructure: errors, config, checkpoints, seeding, progress. Imports nothing from speechlm."""
