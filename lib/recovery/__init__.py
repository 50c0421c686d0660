"""Recovery fine-tuning after pruning that keeps every mask."""
