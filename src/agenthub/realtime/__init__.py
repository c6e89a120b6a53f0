"""Realtime: a per-channel event log with offsets and an epoch, fanned out over WebSocket and
SSE, the same on one process (in-process broker) and across many (Redis broker)."""
