"""lmvisor.providers."""
