"""Durable outbox of messages to merchants, delivered by a worker with retries and backoff."""
