"""Tickets: handoff intake, the state machine, the staff queue, assignment, SLAs, agent replies and incidents."""
