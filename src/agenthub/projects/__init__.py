"""Projects: a user's grouping of agents and sessions."""
