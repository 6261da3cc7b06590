"""Bodies generated from the typed structs decode and translate; broken ones are refused
as `InvalidBody` or `NotJson`, never with another exception (which would be a 500)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relay.frontdoors.native import CreateSessionBody
from relay.vocabulary import GenerationRequest
from relay.wire import anthropic_to_chat, chat_request, responses_request
from relay.wire.chat_request import ChatCompletionRequest
from relay.wire.decoding import InvalidBody, NotJson, decode
from relay.wire.messages_request import MessagesRequest
from tests.wire.bodies import front_door_bodies, mutated

MODEL = "mock"
BODIES = front_door_bodies(MODEL)
PROPERTY = settings(max_examples=300, deadline=None, database=None)


def native(raw: bytes, body: CreateSessionBody) -> GenerationRequest:
    return body.generation_request(MODEL)


Translation = tuple[type[Any], Callable[[bytes, Any], GenerationRequest]]
TRANSLATIONS: dict[str, Translation] = {
    "native": (CreateSessionBody, native),
    "chat": (ChatCompletionRequest, chat_request.generation_request),
    "messages": (MessagesRequest, anthropic_to_chat.generation_request),
    "responses": (responses_request.ResponsesRequest, responses_request.generation_request),
}


def translate(name: str, raw: bytes) -> GenerationRequest:
    body_type, translation = TRANSLATIONS[name]
    return translation(raw, decode(raw, body_type))


@pytest.mark.parametrize("name", TRANSLATIONS)
@PROPERTY
@given(data=st.data())
def test_valid_bodies_decode_and_translate(name: str, data: st.DataObject) -> None:
    body = data.draw(BODIES[name])
    generation = translate(name, json.dumps(body).encode())
    assert generation.model == MODEL and generation.messages


@pytest.mark.parametrize("name", TRANSLATIONS)
@PROPERTY
@given(data=st.data())
def test_broken_bodies_are_refused_by_path_or_as_not_json(name: str, data: st.DataObject) -> None:
    raw = data.draw(mutated(BODIES[name]))
    try:
        translate(name, raw)
    except InvalidBody as refused:
        assert refused.path and refused.problem
    except NotJson:
        pass
