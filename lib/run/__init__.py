"""What a run decides before torch loads (plan, cli, options) and the run itself."""
