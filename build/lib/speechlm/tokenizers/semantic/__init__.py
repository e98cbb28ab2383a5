"""Semantic (HuBERT-style) units: SSL or spectral features + k-means + run-length dedup."""
