"""Conversation turns (what each merchant said and what the bot answered) and the chat state between them."""
