"""The UI message stream's chunks (the Vercel AI SDK front door), byte for byte. Pure code.

The first releases of ai 5, 6 and 7 refuse a chunk with a key they do not name, so each
chunk type's bytes are pinned here: the keys, their order, and no default left in.
"""

from __future__ import annotations

import msgspec
import pytest

from relay.wire import ui_message_stream as wire

STATUS = msgspec.Raw(b'{"state":"retrying","message":"again","attempt":2,"delay_s":0.25}')

EXACT = [
    (
        wire.Start("msg_1", wire.StartMetadata("s_1", "mock")),
        b'{"type":"start","messageId":"msg_1","messageMetadata":{"sessionId":"s_1","model":"mock"}}',
    ),
    (wire.StartStep(), b'{"type":"start-step"}'),
    (wire.TextStart("text-1"), b'{"type":"text-start","id":"text-1"}'),
    (wire.TextDelta("text-1", 'a "b"'), b'{"type":"text-delta","id":"text-1","delta":"a \\"b\\""}'),
    (wire.TextEnd("text-1"), b'{"type":"text-end","id":"text-1"}'),
    (wire.ReasoningStart("reasoning-2"), b'{"type":"reasoning-start","id":"reasoning-2"}'),
    (
        wire.ReasoningDelta("reasoning-2", ""),
        b'{"type":"reasoning-delta","id":"reasoning-2","delta":""}',
    ),
    (wire.ReasoningEnd("reasoning-2"), b'{"type":"reasoning-end","id":"reasoning-2"}'),
    (
        wire.ToolInputStart("call_1", "search"),
        b'{"type":"tool-input-start","toolCallId":"call_1","toolName":"search"}',
    ),
    (
        wire.ToolInputDelta("call_1", '{"q": 1}'),
        b'{"type":"tool-input-delta","toolCallId":"call_1","inputTextDelta":"{\\"q\\": 1}"}',
    ),
    (
        wire.ToolInputAvailable("call_1", "search", {"q": 1}),
        b'{"type":"tool-input-available","toolCallId":"call_1","toolName":"search","input":{"q":1}}',
    ),
    (
        wire.status(STATUS),
        b'{"type":"data-relay-status","data":{"state":"retrying","message":"again","attempt":2,'
        b'"delay_s":0.25},"transient":true}',
    ),
    (wire.FinishStep(), b'{"type":"finish-step"}'),
    (
        wire.Finish(wire.FinishMetadata("tool-calls", wire.usage(3, 8))),
        b'{"type":"finish","messageMetadata":{"finishReason":"tool-calls",'
        b'"usage":{"inputTokens":3,"outputTokens":8,"totalTokens":11}}}',
    ),
    (wire.ErrorChunk("it broke"), b'{"type":"error","errorText":"it broke"}'),
    (wire.Abort(), b'{"type":"abort"}'),
]


@pytest.mark.parametrize(("chunk", "expected"), EXACT, ids=[type(c).__name__ for c, _ in EXACT])
def test_each_chunk_type_is_exactly_these_bytes(chunk: wire.Chunk, expected: bytes) -> None:
    assert wire.encode(chunk) == expected


def test_every_chunk_type_is_pinned_once() -> None:
    pinned = [type(chunk) for chunk, _ in EXACT]
    assert sorted(t.__name__ for t in pinned) == sorted(
        t.__name__ for t in wire.UIMessageChunk.__args__
    )


@pytest.mark.parametrize(("chunk", "expected"), EXACT, ids=[type(c).__name__ for c, _ in EXACT])
def test_a_chunk_reads_back_as_itself(chunk: wire.Chunk, expected: bytes) -> None:
    read = wire.CHUNK.decode(expected)
    assert type(read) is type(chunk) and wire.encode(read) == expected


def test_a_key_the_schema_does_not_name_is_refused_as_ai_5_refuses_it() -> None:
    with pytest.raises(msgspec.ValidationError, match=r"unknown field `reason`"):
        wire.CHUNK.decode(b'{"type":"abort","reason":"user"}')
    with pytest.raises(msgspec.ValidationError, match=r"unknown field `reasoningTokens`"):
        wire.CHUNK.decode(
            b'{"type":"finish","messageMetadata":{"finishReason":"stop","usage":'
            b'{"inputTokens":1,"outputTokens":1,"totalTokens":2,"reasoningTokens":0}}}'
        )


def test_a_tool_calls_input_is_its_arguments_parsed_or_else_their_text() -> None:
    parsed = wire.tool_input("call_1", "search", '{"q": "sea"}')
    assert [wire.encode(chunk) for chunk in parsed][2].endswith(b'"input":{"q":"sea"}}')
    unparsed = wire.tool_input("call_2", "search", "not json")
    assert wire.encode(unparsed[2]).endswith(b'"input":"not json"}')


def test_finish_reasons_in_the_ai_sdks_words() -> None:
    assert [wire.finish_reason(r) for r in ("stop", "length", "tool_calls", "content_filter")] == [
        "stop",
        "length",
        "tool-calls",
        "content-filter",
    ]
    assert wire.finish_reason("pause_turn") == "other"
