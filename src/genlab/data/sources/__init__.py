"""genlab.data.sources."""
