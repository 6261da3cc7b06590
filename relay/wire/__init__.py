"""Provider wire formats (OpenAI Chat Completions and Responses, Anthropic Messages) as
pure code.

Typed request bodies and their one translation each into relay's `GenerationRequest`
(`chat_request`, `messages_request` with `anthropic_to_chat`, `responses_request`, on
the shared `decoding`), builders for every chunk, event and body, SSE framing and the
mapping of finish reasons. No I/O: relay's compatible front doors and the standalone
mock upstream both decode and render through these modules.
"""
