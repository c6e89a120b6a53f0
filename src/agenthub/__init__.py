"""agenthub: a self-hosted backend for AI-assistant and AI-agent applications."""

from __future__ import annotations

__version__ = "0.1.0"
