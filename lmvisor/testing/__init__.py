"""lmvisor.testing."""
