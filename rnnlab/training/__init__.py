"""Training: fit(), the epoch loop, checkpoints, the frozen-feature cache, distributed start-up."""
