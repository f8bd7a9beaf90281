"""genlab.capacity."""
