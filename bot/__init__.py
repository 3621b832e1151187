"""The application shell: app factory, command line, bootstrap and the channel adapters."""
