"""Using agents outside rlkit's trainer: the embedding API, the inference-only policy loader,
export and compression."""
