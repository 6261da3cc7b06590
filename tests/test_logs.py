"""The access log's redaction of secrets in request targets (pure)."""

from __future__ import annotations

import pytest

from relay.logs import redact_secrets

REDACTIONS = [
    ("/v1/sessions/s_1/events?token=rt_abc", "/v1/sessions/s_1/events?token=***"),
    ("/e?last_event_id=3&token=rt_abc&format=openai", "/e?last_event_id=3&token=***&format=openai"),
    ("/e?access_token=a&ID_TOKEN=b&x=1", "/e?access_token=***&ID_TOKEN=***&x=1"),
    ("/e?%74oken=rt_abc", "/e?%74oken=***"),  # a percent-encoded name is still `token`
    ("/e?token=", "/e?token=***"),
    ("/e?token", "/e?token"),  # no value to hide
    ("/e?tokens_used=5", "/e?tokens_used=***"),  # any name containing `token`
    ("/v1/sessions/s_token/events?last_event_id=2", "/v1/sessions/s_token/events?last_event_id=2"),
    ("/v1/sessions", "/v1/sessions"),
    ("/e?x=%41&y=token", "/e?x=%41&y=token"),  # only names decide, not values
]


@pytest.mark.parametrize(("target", "logged"), REDACTIONS)
def test_query_values_of_token_parameters_are_redacted(target: str, logged: str) -> None:
    assert redact_secrets(target) == logged
