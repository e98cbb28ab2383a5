"""Speech/text causal LMs: token space, HF model, data packing, training loop."""
