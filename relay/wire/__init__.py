"""Provider wire formats (OpenAI Chat Completions, Anthropic Messages) as pure code.

Request structs to decode, builders for every chunk, event and body, SSE framing and
the mapping of finish reasons. No I/O: relay's compatible front doors and the
standalone mock upstream both render through these modules.
"""
