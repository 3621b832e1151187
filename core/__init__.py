"""The ground floor: infrastructure every other package stands on (settings, database, store, clock, logs, metrics,
channel-neutral messages, text and identifier parsing, the conversation log and chat state, the outbox)."""
