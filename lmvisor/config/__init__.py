"""lmvisor.config."""
