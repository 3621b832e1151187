"""merchant-assist: the application (settings, storage, router, API, CLI)."""
