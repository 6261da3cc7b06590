"""Subscriber transports: how a session's log reaches clients (SSE, WebSocket)."""
