"""Models, checkpoints and data in and out: sources, loading, saving, block offload."""
