"""Knowledge base: FAQ entries and their versions, the Chinese matcher, troubleshooting guides, unanswered questions."""
