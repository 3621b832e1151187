"""The staff web console: one app of server-rendered pages for agents (queue, tickets) and admins (users, audit,
canned replies, FAQ, unanswered questions, guides, analytics, incidents)."""
