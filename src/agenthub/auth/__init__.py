"""Identity: users, login and tokens, API keys, profile, audit log."""
