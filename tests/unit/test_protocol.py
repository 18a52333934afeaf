"""Framing and decoding: any byte stream either yields valid messages or a ProtocolError."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hermesd import protocol

WORKER = protocol.Codec(protocol.WorkerFrame)

MESSAGES = [
    protocol.Hello("coder", 42),
    protocol.Reply(msg_id=1, seq=0, text="hé ✓"),
    protocol.Typing("local:x"),
    protocol.Done(msg_id=1, error=None),
    protocol.Pong(3, protocol.Stats(turns=2, active_sessions=1)),
    protocol.Log(level="info", event="x", fields={"a": "b"}),
]


@given(st.lists(st.sampled_from(MESSAGES), max_size=20), st.lists(st.integers(1, 50), min_size=1))
def test_frames_survive_any_chunking(messages: list[object], cuts: list[int]) -> None:
    stream = b"".join(WORKER.encode(m) for m in messages)
    reader = protocol.FrameReader()
    decoded: list[object] = []
    position, i = 0, 0
    while position < len(stream):
        chunk = stream[position : position + cuts[i % len(cuts)]]
        position += len(chunk)
        i += 1
        decoded += [WORKER.decode(body) for body in reader.feed(chunk)]
    reader.close()
    assert decoded == messages


@given(st.binary(max_size=200))
def test_garbage_never_raises_anything_but_protocol_error(data: bytes) -> None:
    reader = protocol.FrameReader()
    try:
        for body in reader.feed(data):
            WORKER.decode(body)
        reader.close()
    except protocol.ProtocolError:
        pass


def test_oversized_frame_is_refused_before_it_is_buffered() -> None:
    reader = protocol.FrameReader()
    with pytest.raises(protocol.ProtocolError, match="exceeds"):
        reader.feed(struct.pack(">I", protocol.MAX_FRAME + 1))


def test_truncated_frame_is_an_error_at_end_of_stream() -> None:
    reader = protocol.FrameReader()
    assert reader.feed(WORKER.encode(MESSAGES[0])[:-1]) == []
    with pytest.raises(protocol.ProtocolError, match="inside a frame"):
        reader.close()


def test_wrong_message_for_the_direction_is_an_error() -> None:
    body = protocol.Codec(protocol.ParentFrame).encode(protocol.Stop())[4:]
    with pytest.raises(protocol.ProtocolError):
        WORKER.decode(body)


def test_control_requests_are_json() -> None:
    codec = protocol.Codec(protocol.ControlRequest, json=True)
    assert codec.encode(protocol.ReloadRequest(wait=True))[4:] == b'{"type":"reload","wait":true}'
    assert codec.decode(b'{"type":"agent","action":"stop","agent":"coder"}') == protocol.AgentCommand("stop", "coder")
