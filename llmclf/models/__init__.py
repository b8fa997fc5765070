"""GPT-2 written from scratch, its weights, the classification head, trainable-layer policies."""
