"""Training embeddings with triplet losses: sampler, head, trainer, checkpoints."""
