"""`SSEDecoder` (pure): messages out of a body that arrives in pieces split anywhere."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from relay.providers.sse_decoder import SSEDecoder, SSEMessage


def decode(*chunks: bytes) -> list[SSEMessage]:
    decoder = SSEDecoder()
    messages = [message for chunk in chunks for message in decoder.feed(chunk)]
    return messages + decoder.flush()


def test_data_lines_end_a_message_at_the_blank_line() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b'data: {"a": 1}\n') == []
    assert decoder.feed(b"\n") == [SSEMessage('{"a": 1}')]
    assert decoder.flush() == []


def test_event_names_multi_line_data_comments_and_ignored_fields() -> None:
    body = (
        b": a comment\n"
        b"event: message_start\n"
        b"id: 7\n"
        b"retry: 100\n"
        b"data: one\n"
        b"data:two\n"
        b"data\n"
        b"\n"
        b"data: plain\n"
        b"\n"
    )
    assert decode(body) == [
        SSEMessage("one\ntwo\n", "message_start"),
        SSEMessage("plain", "message"),  # the event name lasts for one message
    ]


def test_crlf_and_cr_line_ends() -> None:
    assert decode(b"data: a\r\n\r\ndata: b\r\rdata: c\n\n") == [
        SSEMessage("a"),
        SSEMessage("b"),
        SSEMessage("c"),
    ]


def test_a_crlf_split_between_chunks_is_one_line_end() -> None:
    assert decode(b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n") == [SSEMessage("a\nb")]


def test_a_character_split_between_chunks_arrives_whole() -> None:
    encoded = "data: héllo 🌍\n\n".encode()
    split = encoded.index("🌍".encode()) + 2  # inside the four bytes of the emoji
    assert decode(encoded[:split], encoded[split:]) == [SSEMessage("héllo 🌍")]


def test_blank_lines_without_data_and_events_without_data_dispatch_nothing() -> None:
    assert decode(b"\n\n: ping\n\nevent: ping\n\n") == []


def test_the_end_of_the_body_completes_the_last_message() -> None:
    assert decode(b"data: [DONE]") == [SSEMessage("[DONE]")]
    assert decode(b"data: x\n") == [SSEMessage("x")]


def test_empty_chunks_change_nothing() -> None:
    assert decode(b"data: a\r", b"", b"\n\n") == [SSEMessage("a")]


# Bodies made of the lines upstreams send, with every line ending.
LINES = st.sampled_from(
    [
        "data: {}",
        'data: {"text": "héllo 🌍"}',
        "data:",
        "event: content_block_delta",
        ": ping",
        "id: 1",
        "",
        "data: [DONE]",
    ]
)
ENDINGS = st.sampled_from(["\n", "\r\n", "\r"])
BODIES = st.lists(st.tuples(LINES, ENDINGS), max_size=30).map(
    lambda lines: "".join(line + end for line, end in lines).encode()
)


@given(body=BODIES, cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=10))
def test_any_split_of_a_body_gives_the_same_messages(body: bytes, cuts: list[int]) -> None:
    points = sorted({cut % (len(body) + 1) for cut in cuts})
    bounds = zip([0, *points], [*points, len(body)], strict=True)
    chunks = [body[start:end] for start, end in bounds]
    assert decode(*chunks) == decode(body)


@given(body=BODIES)
def test_byte_by_byte_gives_the_same_messages(body: bytes) -> None:
    assert decode(*(body[i : i + 1] for i in range(len(body)))) == decode(body)
