"""pytest plugin: isolated runtime namespaces per test (filled in by the runtime core)."""
