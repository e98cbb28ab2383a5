"""Audio IO, the corpus format, the synthetic corpus and importers of real corpora."""
