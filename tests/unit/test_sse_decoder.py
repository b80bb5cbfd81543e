"""The SSE decoder follows the WHATWG rules, whatever the chunking (SSE.md cases 1-6, 12)."""

from __future__ import annotations

import asyncio

import httpx
import httpx_sse
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jobtrail.listeners.sse_decoder import MAX_LINE, SSEDecoder, SSEEvent, SSEProtocolError


def decode(*chunks: bytes, last_event_id: str = "") -> tuple[list[SSEEvent], SSEDecoder]:
    decoder = SSEDecoder(last_event_id)
    events = [event for chunk in chunks for event in decoder.feed(chunk)]
    return events, decoder


def datas(*chunks: bytes) -> list[str]:
    return [e.data for e in decode(*chunks)[0]]


def one_byte_chunks(raw: bytes) -> list[bytes]:
    return [raw[i : i + 1] for i in range(len(raw))]


@pytest.mark.parametrize(
    "raw",
    [
        b"data: a\n\ndata: b\n\n",
        b"data: a\r\n\r\ndata: b\r\n\r\n",
        b"data: a\r\rdata: b\r\r",
        b"data: a\r\n\ndata: b\r\r",
    ],
    ids=["LF", "CRLF", "CR", "mixed"],
)
def test_every_line_ending_ends_a_line(raw: bytes) -> None:
    assert ["a", "b"] == datas(raw)
    assert ["a", "b"] == datas(*one_byte_chunks(raw))


def test_a_crlf_split_across_chunks_is_one_line_end() -> None:
    """A CR at a chunk's end followed by LF must not make an empty line (a dispatch)."""
    events, _ = decode(b"event: x\r", b"\ndata: 1\r", b"\n\r", b"\n")
    assert [SSEEvent("x", "1", "")] == events


def test_a_cr_at_a_chunk_end_then_data_is_a_line_end() -> None:
    assert ["1", "2"] == datas(b"data: 1\r", b"\rdata: 2\r", b"\r")


def test_utf8_split_across_chunks_decodes() -> None:
    raw = "data: héllo wörld ✓ 🎬\n\n".encode()
    assert ["héllo wörld ✓ 🎬"] == datas(*one_byte_chunks(raw))


def test_invalid_utf8_is_replaced_not_fatal() -> None:
    assert ["a\ufffdb"] == datas(b"data: a\xffb\n\n")


@pytest.mark.parametrize(
    "chunks",
    [
        (b"\xef\xbb\xbfdata: x\n\n",),
        (b"\xef", b"\xbb", b"\xbfdata: x\n\n"),
        (b"\xef\xbb\xbf", b"data: x\n\n"),
    ],
)
def test_one_leading_bom_is_stripped_even_when_split(chunks: tuple[bytes, ...]) -> None:
    assert ["x"] == datas(*chunks)


def test_only_the_first_bom_is_stripped() -> None:
    """A second BOM makes the field name `\\ufeffdata`, which is not a field: no event."""
    assert [] == datas(b"\xef\xbb\xbf\xef\xbb\xbfdata: x\n\n")


def test_heartbeat_comments_alone_make_no_events() -> None:
    assert [] == datas(b": keep-alive\n\n" * 5, b":\n\n")


def test_a_comment_after_an_event_with_an_id_is_no_phantom_event() -> None:
    events, decoder = decode(b"id: 7\ndata: x\n\n: keep-alive\n\n")
    assert [SSEEvent("message", "x", "7")] == events
    assert "7" == decoder.last_event_id


@pytest.mark.parametrize(
    "block", [b"id: 5\n\n", b"retry: 1000\n\n", b"event: ping\n\n", b"id: 5\nretry: 10\n\n"]
)
def test_blocks_without_data_dispatch_nothing(block: bytes) -> None:
    assert [] == datas(block)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"retry: 2500", 2500),
        (b"retry:0", 0),
        (b"retry: -5", None),
        (b"retry:  10", None),
        (b"retry: 1_000", None),
        (b"retry: 10.5", None),
        (b"retry: \xd9\xa3", None),
        (b"retry: ", None),
        (b"retry: 1e3", None),
    ],
)
def test_retry_counts_only_when_all_ascii_digits(line: bytes, expected: int | None) -> None:
    _, decoder = decode(line + b"\n\n")
    assert expected == decoder.retry


def test_a_bogus_retry_keeps_the_last_valid_one() -> None:
    _, decoder = decode(b"retry: 3000\n\nretry: -1\n\n")
    assert 3000 == decoder.retry


def test_an_unterminated_final_event_is_not_dispatched() -> None:
    events, _ = decode(b"data: complete\n\ndata: partial\n")
    assert ["complete"] == [e.data for e in events]


def test_the_id_of_an_unfinished_event_is_not_the_last_event_id() -> None:
    _, decoder = decode(b"id: 1\ndata: a\n\nid: 2\ndata: b")
    assert "1" == decoder.last_event_id


def test_ids_persist_reset_and_ignore_nul() -> None:
    events, decoder = decode(b"id: 1\ndata: a\n\ndata: b\n\nid: x\x00y\ndata: c\n\nid\ndata: d\n\n")
    assert ["1", "1", "1", ""] == [e.id for e in events]
    assert "" == decoder.last_event_id


def test_the_last_event_id_carries_over_a_reconnect() -> None:
    events, _ = decode(b"data: a\n\n", last_event_id="41")
    assert [SSEEvent("message", "a", "41")] == events


def test_fields_follow_the_spec() -> None:
    raw = b"event: done\ndata\ndata:x\ndata:  two spaces\nfoo: ignored\ndata: last\n\n"
    events, _ = decode(raw)
    assert [SSEEvent("done", "\nx\n two spaces\nlast", "")] == events


def test_an_empty_data_line_is_an_event_with_empty_data() -> None:
    assert [""] == datas(b"data:\n\n")


def test_a_multi_megabyte_event_split_in_small_chunks_decodes_whole() -> None:
    """Lines joined once at their end: linear time (a quadratic join would not finish
    here). 15.5 MiB of data in 512 KiB lines, each split over 512 chunks."""
    line = b"data: " + b"x" * (512 * 1024) + b"\n"
    raw = line * 31 + b"\n"
    chunks = [raw[i : i + 1024] for i in range(0, len(raw), 1024)]
    events, _ = decode(*chunks)
    assert 1 == len(events)
    assert 31 * 512 * 1024 + 30 == len(events[0].data)  # the lines, joined by newlines


@pytest.mark.parametrize("chunk", [1024, 4 * 1024 * 1024], ids=["split", "whole"])
def test_a_line_over_the_limit_is_a_protocol_error(chunk: int) -> None:
    raw = b"data: " + b"x" * MAX_LINE + b"\n\n"
    decoder = SSEDecoder()
    with pytest.raises(SSEProtocolError, match="line longer"):
        for start in range(0, len(raw), chunk):
            decoder.feed(raw[start : start + chunk])


def test_a_line_at_the_limit_is_fine() -> None:
    raw = b"data:" + b"x" * (MAX_LINE - 5) + b"\n\n"
    assert [MAX_LINE - 5] == [len(d) for d in datas(raw[:1000], raw[1000:])]


def test_an_event_with_too_much_data_is_a_protocol_error() -> None:
    line = b"data: " + b"x" * (1024 * 1024 - 6) + b"\n"
    decoder = SSEDecoder()
    with pytest.raises(SSEProtocolError, match="more than"):
        for _ in range(17):
            decoder.feed(line)


_field_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n\x00"), max_size=20
)
_blocks = st.lists(
    st.tuples(
        st.sampled_from(["", "update", "media_generation_completed"]),
        st.lists(_field_text, min_size=1, max_size=3),
    ),
    max_size=8,
)


def _stream(blocks: list[tuple[str, list[str]]], newline: str) -> bytes:
    out = []
    for event, lines in blocks:
        if event:
            out.append(f"event: {event}{newline}")
        out.extend(f"data: {line}{newline}" for line in lines)
        out.append(f": keep-alive{newline}" if not event else "")
        out.append(newline)
    return "".join(out).encode()


@settings(max_examples=200, deadline=None)
@given(blocks=_blocks, newline=st.sampled_from(["\n", "\r\n", "\r"]), cuts=st.lists(st.integers(0, 2000)))
def test_any_chunking_gives_the_same_events(
    blocks: list[tuple[str, list[str]]], newline: str, cuts: list[int]
) -> None:
    raw = _stream(blocks, newline)
    whole, _ = decode(raw)
    points = sorted({c % (len(raw) + 1) for c in cuts})
    pieces = [raw[a:b] for a, b in zip([0, *points], [*points, len(raw)], strict=True)]
    assert whole == decode(*pieces)[0]
    assert len(blocks) == len(whole)


@settings(max_examples=100, deadline=None)
@given(blocks=_blocks)
def test_agrees_with_httpx_sse_on_well_formed_streams(blocks: list[tuple[str, list[str]]]) -> None:
    """On input without the cases httpx-sse gets wrong (SSE.md), both read the same events."""
    raw = _stream(blocks, "\n")
    ours = [(e.event, e.data) for e in decode(raw)[0]]

    async def theirs() -> list[tuple[str, str]]:
        response = httpx.Response(200, headers={"content-type": "text/event-stream"}, content=raw)
        return [(e.event, e.data) async for e in httpx_sse.EventSource(response).aiter_sse()]

    assert asyncio.run(theirs()) == ours
