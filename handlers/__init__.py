"""Intents: one module per intent, each handler `turn -> Reply | None`, tried in the order of registry.RULES."""
