"""Model initialization: cold (random) and warm (from a text LM, TWIST)."""
