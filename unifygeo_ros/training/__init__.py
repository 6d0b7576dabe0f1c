"""Training: augmentations, batch sampling, the training loop."""
