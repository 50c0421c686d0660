"""The pruning engine: method table, block walker, scores, masks, OBS, layer sparsity."""
