"""lmvisor.services."""
