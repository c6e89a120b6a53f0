"""Ideas and the specifications generated from them (the idea-to-spec app)."""
