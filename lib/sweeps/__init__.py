"""Sweep tooling: entries, runners, summaries and plots."""
