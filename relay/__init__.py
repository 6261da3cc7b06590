"""relay: a durable, resumable streaming relay for LLM responses."""

__version__ = "0.1.0"
