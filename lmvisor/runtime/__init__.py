"""lmvisor.runtime."""
