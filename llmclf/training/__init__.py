"""Training: configuration, the Trainer, metrics, checkpoints, progress reporting."""
