"""Wanda with Selectivity: one-shot LLM pruning with selectivity-aware scores."""
