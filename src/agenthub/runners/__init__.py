"""Runners: how a job talks to a model (OpenAI-compatible endpoint, CLI, or offline echo)."""
