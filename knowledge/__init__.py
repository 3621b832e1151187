"""Knowledge base: FAQ entries, the Chinese matcher, and their admin API."""
