"""The staff console: server-rendered pages for agents (queue, tickets) and admins (users, audit log, canned)."""
