"""The access log's redaction of secrets in request targets: read tokens, keys, session ids
(pure)."""

from __future__ import annotations

import pytest

from relay.logs import redact_secrets
from relay.session import new_session_id
from relay.vocabulary import session_suffix, session_tag

REDACTIONS = [
    ("/v1/sessions/s_1/events?token=rt_abc", "/v1/sessions/s_1/events?token=***"),
    ("/e?last_event_id=3&token=rt_abc&format=openai", "/e?last_event_id=3&token=***&format=openai"),
    ("/e?access_token=a&ID_TOKEN=b&x=1", "/e?access_token=***&ID_TOKEN=***&x=1"),
    ("/e?%74oken=rt_abc", "/e?%74oken=***"),  # a percent-encoded name is still `token`
    ("/e?token=", "/e?token=***"),
    ("/e?token", "/e?token"),  # no value to hide
    ("/e?tokens_used=5", "/e?tokens_used=***"),  # any name containing `token`
    ("/v1/models?api_key=rk_abc&x=1", "/v1/models?api_key=***&x=1"),  # a key, where none is read
    ("/e?key=rk_abc", "/e?key=***"),
    ("/e?X-API-KEY=rk_abc", "/e?X-API-KEY=***"),
    ("/v1/sessions/s_token/events?last_event_id=2", "/v1/sessions/s_token/events?last_event_id=2"),
    ("/v1/sessions", "/v1/sessions"),
    ("/e?x=%41&y=token", "/e?x=%41&y=token"),  # only names decide, not values
]


@pytest.mark.parametrize(("target", "logged"), REDACTIONS)
def test_query_values_of_token_and_key_parameters_are_redacted(target: str, logged: str) -> None:
    assert redact_secrets(target) == logged


SESSION_ID = new_session_id()
TAG = session_tag(SESSION_ID)
RANDOM = session_suffix(SESSION_ID)
TAGGED = [
    (f"/v1/sessions/{SESSION_ID}", f"/v1/sessions/{TAG}"),
    (f"/v1/sessions/{SESSION_ID}/events?token=rt_x", f"/v1/sessions/{TAG}/events?token=***"),
    (f"/v1/responses/resp_{RANDOM}/cancel", f"/v1/responses/{TAG}/cancel"),
    (f"/v1/x/msg_{RANDOM}", f"/v1/x/{TAG}"),
    (f"/v1/x/chatcmpl-{RANDOM}", f"/v1/x/{TAG}"),
    (f"/v1/sessions/s%5F{RANDOM}/events", f"/v1/sessions/{TAG}/events"),  # decoded, as routed
    (f"/v1/sessions/{SESSION_ID}x", f"/v1/sessions/{SESSION_ID}x"),  # not an id: 23 characters
    (f"/v1/sessions/{RANDOM}", f"/v1/sessions/{RANDOM}"),  # no prefix: not an id either
    (f"/e?session={SESSION_ID}", f"/e?session={SESSION_ID}"),  # the query is not a path
]


@pytest.mark.parametrize(("target", "logged"), TAGGED)
def test_session_ids_in_paths_are_logged_as_their_tag(target: str, logged: str) -> None:
    assert redact_secrets(target) == logged
