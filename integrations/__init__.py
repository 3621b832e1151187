"""Integrations: the systems allowed to call the JSON chat API, each with its own key, signing secret and identities."""
