"""Tickets, the staff queue, assignment, SLAs and agent replies (the human-handoff issue builds this package)."""
