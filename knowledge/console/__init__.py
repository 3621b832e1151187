"""Admin console pages for the knowledge base, unanswered questions, guides, analytics and incidents."""
