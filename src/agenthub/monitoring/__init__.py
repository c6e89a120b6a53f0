"""Health probes, metrics and monitoring."""
