"""What a model holds: its decoder blocks and the matrices in each (Linear weights and fused
expert tensors), independent of how it was loaded or what prunes it."""
