"""What the load generator reads off the wire: response heads, chunked bodies, SSE frames."""

from __future__ import annotations

import msgspec
import pytest

from bench.wire import (
    Arrival,
    ChunkedDecoder,
    Frame,
    ResponseHead,
    arrivals,
    content_of,
    parse_head,
    sse_frames,
    token_count,
)
from relay import sse
from relay.wire import openai_chat

BODY = b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"


def openai_frame(delta: dict[str, object], at: float = 1.0) -> Frame:
    chunk = {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta}]}
    return Frame(at, None, "message", msgspec.json.encode(chunk))


# --- response head ---------------------------------------------------------------------


def test_a_chunked_head_has_its_status_and_no_length() -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked"
    assert parse_head(head) == ResponseHead(200, chunked=True, content_length=None)


def test_a_head_with_content_length_is_not_chunked() -> None:
    head = b"HTTP/1.1 404 Not Found\r\nContent-Length: 27\r\nConnection: keep-alive"
    assert parse_head(head) == ResponseHead(404, chunked=False, content_length=27)


def test_header_names_and_the_chunked_coding_are_matched_without_case() -> None:
    head = b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, Chunked"
    assert parse_head(head).chunked


def test_a_head_without_framing_headers_or_a_reason_is_read_to_close() -> None:
    assert parse_head(b"HTTP/1.1 204") == ResponseHead(204, chunked=False, content_length=None)


# --- chunked bodies --------------------------------------------------------------------


def test_a_whole_chunked_body_in_one_feed_is_its_payload() -> None:
    decoder = ChunkedDecoder()
    assert decoder.feed(BODY) == b"hello world"
    assert decoder.finished


def test_a_chunked_body_fed_byte_by_byte_gives_the_same_payload() -> None:
    decoder = ChunkedDecoder()
    payload = b"".join(decoder.feed(BODY[i : i + 1]) for i in range(len(BODY)))
    assert payload == b"hello world"
    assert decoder.finished


def test_each_feed_returns_the_payload_bytes_it_completed() -> None:
    decoder = ChunkedDecoder()
    assert decoder.feed(b"5\r\nhel") == b"hel"
    assert decoder.feed(b"lo\r") == b"lo"
    assert decoder.feed(b"\n6\r\n world\r\n") == b" world"
    assert not decoder.finished


def test_a_hex_size_line_split_across_feeds_waits_for_its_crlf() -> None:
    decoder = ChunkedDecoder()
    assert decoder.feed(b"1") == b""
    alphabet = b"abcdefghijklmnopqrstuvwxyz"  # 0x1A bytes
    assert decoder.feed(b"A\r\n" + alphabet + b"\r\n") == alphabet


def test_crlf_inside_a_chunks_payload_is_payload() -> None:
    decoder = ChunkedDecoder()
    assert decoder.feed(b"4\r\na\r\nb\r\n0\r\n\r\n") == b"a\r\nb"


def test_chunk_extensions_are_ignored() -> None:
    decoder = ChunkedDecoder()
    assert decoder.feed(b"5;name=value\r\nhello\r\n0;last\r\n\r\n") == b"hello"
    assert decoder.finished


def test_the_body_ends_at_the_zero_chunk_and_trailers_are_ignored() -> None:
    decoder = ChunkedDecoder()
    assert decoder.feed(b"5\r\nhello\r\n") == b"hello"
    assert not decoder.finished
    assert decoder.feed(b"0\r\nX-Trailer: 1\r\n\r\n") == b""
    assert decoder.finished
    assert decoder.feed(b"5\r\nlater\r\n") == b""


# --- SSE frames ------------------------------------------------------------------------


def test_frames_carry_id_event_and_data_and_default_to_message() -> None:
    reads = [(1.0, b"id: 7\nevent: delta\ndata: {}\n\ndata: [DONE]\n\n")]
    assert list(sse_frames(reads)) == [
        Frame(1.0, 7, "delta", b"{}"),
        Frame(1.0, None, "message", b"[DONE]"),
    ]


def test_a_frame_split_across_reads_is_stamped_with_the_read_that_completes_it() -> None:
    reads = [(1.0, b"event: delta\nda"), (2.0, b"ta: x\n"), (3.0, b"\ndata: y\n\ndata: z")]
    assert list(sse_frames(reads)) == [
        Frame(3.0, None, "delta", b"x"),
        Frame(3.0, None, "message", b"y"),
    ]


def test_comments_pings_and_retry_lines_make_no_frame() -> None:
    reads = [(1.0, b": ping\n\nretry: 1000\n\n: ping\n\ndata: x\n\n")]
    assert list(sse_frames(reads)) == [Frame(1.0, None, "message", b"x")]


def test_data_lines_are_joined_and_one_leading_space_is_dropped() -> None:
    reads = [(1.0, b"data:a\ndata:  b\n\n")]
    assert list(sse_frames(reads)) == [Frame(1.0, None, "message", b"a\n b")]


def test_frames_the_relay_encodes_are_read_back() -> None:
    body = (
        sse.retry_frame(1000)
        + sse.event_frame(1, "delta", b'{"text":"hi"}')
        + sse.PING
        + sse.data_frame(b"[DONE]")
    )
    assert list(sse_frames([(1.0, body)])) == [
        Frame(1.0, 1, "delta", b'{"text":"hi"}'),
        Frame(1.0, None, "message", b"[DONE]"),
    ]


# --- content and tokens ----------------------------------------------------------------


def test_content_of_a_native_delta_is_its_text() -> None:
    assert content_of(Frame(1.0, 3, "delta", b'{"text":" world"}')) == " world"


def test_content_of_an_openai_chunk_is_its_delta_content() -> None:
    assert content_of(openai_frame({"content": "Hello"})) == "Hello"


@pytest.mark.parametrize(
    "delta",
    [{}, {"role": "assistant"}, {"role": "assistant", "content": ""}, {"content": None}],
)
def test_an_openai_chunk_without_delta_content_has_none(delta: dict[str, object]) -> None:
    assert content_of(openai_frame(delta)) is None


def test_an_openai_chunk_without_choices_has_no_content() -> None:
    usage = b'{"object":"chat.completion.chunk","choices":[],"usage":{"total_tokens":3}}'
    assert content_of(Frame(1.0, None, "message", usage)) is None


def test_done_and_other_native_events_have_no_content() -> None:
    assert content_of(Frame(1.0, None, "message", b"[DONE]")) is None
    assert content_of(Frame(1.0, 9, "done", b'{"status":"completed"}')) is None


def test_a_mock_token_is_a_word_and_only_the_first_has_no_leading_space() -> None:
    assert token_count("Hello world again", first=True) == 3
    assert token_count(" world again", first=False) == 2
    assert token_count(" world", first=False) == 1


def test_arrivals_of_a_relay_openai_stream_are_its_text_frames_with_token_counts() -> None:
    head = ("chatcmpl-bench", 1_700_000_000, "mock")
    chunks = [
        openai_chat.role_chunk(*head),
        openai_chat.text_chunk(*head, "Hello"),
        openai_chat.text_chunk(*head, " big wide"),
        openai_chat.finish_chunk(*head, "stop"),
    ]
    frames = [openai_chat.chunk_frame(chunk) for chunk in chunks]
    reads = [
        (1.0, frames[0] + frames[1]),
        (1.25, sse.PING),
        (1.5, frames[2][:10]),
        (1.75, frames[2][10:] + frames[3] + sse.data_frame(b"[DONE]")),
    ]
    assert arrivals(reads) == [Arrival(1.0, 1), Arrival(1.75, 2)]
