"""Chat sessions, their messages and the tool executions of their agents."""
