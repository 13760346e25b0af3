"""lmvisor.programs."""
