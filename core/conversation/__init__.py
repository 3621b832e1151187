"""Conversation turns: what each merchant said and what the bot answered."""
