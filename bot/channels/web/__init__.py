"""The web chat channel: a merchant-facing chat page at /chat (embeddable in an iframe), on the same router and outbox
as every channel, with agents' replies and the rating question delivered live (server-sent events, or polling)."""
