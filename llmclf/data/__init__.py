"""Data preparation: datasets, cleaning, labels, balancing, splits, tokenizer, padding, loaders."""
