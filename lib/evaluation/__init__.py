"""Perplexity and zero-shot evaluation."""
