"""Intent handlers: each takes a channel-neutral turn and returns a channel-neutral Reply."""
