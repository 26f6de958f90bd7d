"""pytest plugin (``pytest11`` entry point): fixtures for testing against a virtual key."""
