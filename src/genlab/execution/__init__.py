"""genlab.execution."""
