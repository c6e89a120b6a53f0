"""Agents: configured assistants with a runner, a model and a status."""
