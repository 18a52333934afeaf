"""Fuzzing the frame decoders: valid frames of every conversation round-trip through any
chunking, and a frame damaged in any way gives a ProtocolError, never another exception."""

from __future__ import annotations

import struct
from types import NoneType, UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import msgspec
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from hermesd import protocol
from tests.unit._fuzz import FUZZ

# (union or struct, json?): the kinds each socket decodes
CONVERSATIONS = {
    "worker -> parent": (protocol.WorkerFrame, False),
    "parent -> worker": (protocol.ParentFrame, False),
    "parent -> zygote": (protocol.SpawnRequest, False),
    "zygote -> parent": (protocol.ZygoteFrame, False),
    "control request": (protocol.ControlRequest, True),
    "control reply": (protocol.ControlReply, True),
    "local socket": (protocol.LocalFrame, True),
}

int64 = st.integers(-(2**63), 2**63 - 1)
json_value = st.recursive(st.none() | st.booleans() | int64 | st.text(max_size=8),
                          lambda inner: st.lists(inner, max_size=3)
                          | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=8)


def members(kind: Any) -> tuple[type, ...]:
    return get_args(kind) if get_origin(kind) in (Union, UnionType) else (kind,)


def values(tp: Any) -> st.SearchStrategy[Any]:
    """Valid values of one field's annotation."""
    origin, args = get_origin(tp), get_args(tp)
    if origin is Annotated:  # a bounded integer (protocol.Id)
        meta = next(m for m in args[1:] if isinstance(m, msgspec.Meta))
        return st.integers(meta.ge, meta.le)
    if origin in (Union, UnionType):
        return st.one_of([values(arg) for arg in args])
    if origin is Literal:
        return st.sampled_from(args)
    if origin is tuple:
        return st.lists(values(args[0]), max_size=3).map(tuple)
    if origin is list:
        return st.lists(values(args[0]), max_size=3)
    if origin is dict:
        return st.dictionaries(values(args[0]), values(args[1]), max_size=3)
    if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
        return structs(tp)
    simple = {int: int64, str: st.text(max_size=12), bool: st.booleans(), NoneType: st.none(),
              float: st.floats(allow_nan=False)}
    return simple.get(tp, json_value)


def structs(cls: type[msgspec.Struct]) -> st.SearchStrategy[Any]:
    fields = msgspec.structs.fields(cls)
    return st.builds(cls, **{f.name: values(f.type) for f in fields})


def frames(kind: Any) -> st.SearchStrategy[Any]:
    return st.one_of([structs(cls) for cls in members(kind)])


@st.composite
def conversation(draw: st.DrawFn) -> tuple[str, protocol.Codec, Any]:
    name = draw(st.sampled_from(sorted(CONVERSATIONS)))
    kind, json = CONVERSATIONS[name]
    return name, protocol.Codec(kind, json=json), kind


def decoded_or_refused(codec: protocol.Codec, kind: Any, body: bytes) -> Any:
    """The property every decoder keeps: a message of its own kinds, or ProtocolError."""
    try:
        message = codec.decode(body)
    except protocol.ProtocolError:
        return None
    assert isinstance(message, members(kind))
    return message


# --------------------------------------------------------------------------- valid frames


@FUZZ
@given(conversation(), st.data(), st.lists(st.integers(1, 64), min_size=1, max_size=5))
def test_valid_frames_round_trip_through_any_chunking(conv: Any, data: Any, cuts: list[int]) -> None:
    _, codec, kind = conv
    messages = data.draw(st.lists(frames(kind), min_size=1, max_size=4))
    stream = b"".join(map(codec.encode, messages))
    reader, decoded, position = protocol.FrameReader(), [], 0
    for i in range(len(stream)):
        if position >= len(stream):
            break
        chunk = stream[position : position + cuts[i % len(cuts)]]
        position += len(chunk)
        decoded += [codec.decode(body) for body in reader.feed(chunk)]
    reader.close()
    assert decoded == messages


# --------------------------------------------------------------------------- damaged frames


def wrong_value(value: Any) -> st.SearchStrategy[Any]:
    """A value of another type, or out of range of the one it has."""
    if isinstance(value, bool):
        return st.sampled_from([0, "true", None])
    if isinstance(value, int):
        return st.sampled_from([2**64 - 1, -(2**63), 1.5, "1", None, [value]])
    if isinstance(value, str):
        return st.sampled_from([b"\xff\xfe", 7, None, [value], {"a": value}])
    return st.sampled_from([None, 1, "x", {"type": "Nope"}])


@st.composite
def damaged(draw: st.DrawFn, kind: Any) -> dict[str, Any]:
    """A valid frame as plain data, then one field dropped, retyped, added, or its tag
    changed."""
    raw = msgspec.to_builtins(draw(frames(kind)))
    if not isinstance(raw, dict):
        return raw
    how = draw(st.sampled_from(["drop", "retype", "add", "tag"]))
    keys = sorted(raw)
    if how == "drop" and keys:
        del raw[draw(st.sampled_from(keys))]
    elif how == "retype" and keys:
        key = draw(st.sampled_from(keys))
        raw[key] = draw(wrong_value(raw[key]))
    elif how == "add":
        raw[draw(st.text(max_size=8))] = draw(json_value)
    else:
        raw["type"] = draw(st.text(max_size=8) | int64 | st.none())
    return raw


@FUZZ
@given(conversation(), st.data())
def test_damaged_frame_is_a_protocol_error_or_a_valid_message(conv: Any, data: Any) -> None:
    _, codec, kind = conv
    raw = data.draw(damaged(kind))
    json = CONVERSATIONS[conv[0]][1]
    try:
        body = msgspec.json.encode(raw) if json else msgspec.msgpack.encode(raw)
    except (TypeError, UnicodeDecodeError):  # bytes in JSON: send them raw instead
        body = repr(raw).encode()
    decoded_or_refused(codec, kind, body)


@FUZZ
@given(conversation(), st.data(), st.binary(max_size=40), st.integers(0, 10**6))
def test_garbage_after_valid_frames_loses_none_of_them(
    conv: Any, data: Any, garbage: bytes, cut: int
) -> None:
    """Frames before the damage decode as sent; after it, only ProtocolError."""
    _, codec, kind = conv
    messages = data.draw(st.lists(frames(kind), max_size=3))
    tail = data.draw(frames(kind))
    encoded_tail = codec.encode(tail)
    stream = b"".join(map(codec.encode, messages)) + encoded_tail[: cut % len(encoded_tail)] + garbage
    reader = protocol.FrameReader(max_frame=1 << 16)
    try:
        bodies = reader.feed(stream)
    except protocol.ProtocolError:
        return
    assert [codec.decode(body) for body in bodies[: len(messages)]] == messages
    for body in bodies[len(messages):]:
        decoded_or_refused(codec, kind, body)
    try:
        reader.close()
    except protocol.ProtocolError:
        pass


@FUZZ
@given(conversation(), st.binary(max_size=200))
@example(("control reply", protocol.Codec(protocol.ControlReply, json=True), protocol.ControlReply),
         b'{"ok":true,"data":' + b"[" * 100_000 + b"]" * 100_000 + b"}")
@example(("parent -> worker", protocol.Codec(protocol.ParentFrame), protocol.ParentFrame),
         b"\x82\xa4type\xa4Ping\xa1x" + b"\x91" * 100_000 + b"\x90")
@example(("parent -> worker", protocol.Codec(protocol.ParentFrame), protocol.ParentFrame),
         b"\x81\xa4type\xa2\xff\xff")  # a tag that is not UTF-8
def test_any_body_is_a_protocol_error_or_a_valid_message(conv: Any, body: bytes) -> None:
    _, codec, kind = conv
    decoded_or_refused(codec, kind, body)


@pytest.mark.parametrize("name", sorted(CONVERSATIONS))
def test_deeply_nested_body_is_a_protocol_error(name: str) -> None:
    kind, json = CONVERSATIONS[name]
    nested = b"[" * 100_000 + b"]" * 100_000 if json else b"\x91" * 100_000 + b"\x90"
    with pytest.raises(protocol.ProtocolError, match="nested too deeply|undecodable"):
        protocol.Codec(kind, json=json).decode(nested)


@FUZZ
@given(st.integers(protocol.MAX_FRAME + 1, 2**32 - 1), st.binary(max_size=20))
def test_length_past_the_cap_is_refused_whatever_follows(length: int, rest: bytes) -> None:
    with pytest.raises(protocol.ProtocolError, match="exceeds"):
        protocol.FrameReader().feed(struct.pack(">I", length) + rest)
