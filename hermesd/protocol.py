"""The wire format: every message that crosses a process boundary, in one table.

Three conversations use it:

* parent <-> worker, msgpack over a socketpair (`WorkerFrame`, `ParentFrame`);
* parent <-> zygote, msgpack over a socketpair, the worker's socket riding along
  as SCM_RIGHTS (`SpawnRequest`, `ZygoteFrame`);
* clients (hermesctl, scripts) <-> the control and local sockets, JSON
  (`ControlRequest`, `ControlReply`, `LocalFrame`).

Every frame is a 4-byte big-endian length followed by the encoded body.  This module is the
only one imported by both the parent and the workers, so it imports nothing of either.
"""

from __future__ import annotations

import struct
from typing import Annotated, Any, Literal

import msgspec

MAX_FRAME = 4 * 1024 * 1024
"""Largest body accepted.  Replies are text and file *paths*, never file contents, so a
bigger frame can only come from a bug or a hostile peer."""

_HEADER = struct.Struct(">I")


class ProtocolError(Exception):
    """The peer sent something that is not a valid frame; the connection must be dropped."""


# --------------------------------------------------------------------------- worker spec


class SharedPathSpec(msgspec.Struct, frozen=True):
    path: str
    mode: Literal["ro", "rw"] = "ro"


class LLMSpec(msgspec.Struct, frozen=True, kw_only=True):
    base_url: str
    model: str
    api_key_env: str | None = None
    api_key_file: str | None = None
    timeout: float = 120.0
    max_retries: int = 2


class RunAs(msgspec.Struct, frozen=True, kw_only=True):
    """The user a root daemon's workers become (`[daemon] user`), resolved when the
    config is loaded so that a worker needs no user database lookup of its own."""

    user: str
    uid: int
    gid: int
    groups: tuple[int, ...] = ()


class WorkerSpec(msgspec.Struct, frozen=True, kw_only=True):
    """Everything a worker needs to become one agent.  Two specs that compare equal mean
    a reload leaves that agent's process alone."""

    agent_id: str
    runtime: str
    workspace: str
    llm: LLMSpec | None = None
    shared_paths: tuple[SharedPathSpec, ...] = ()
    can_message: tuple[str, ...] = ()
    tools: tuple[str, ...] = ()
    memory_max: int | None = None
    max_queue: int = 100
    echo_delay: float = 0.0
    history_budget: int = 48_000
    max_tool_steps: int = 8
    run_as: RunAs | None = None


# --------------------------------------------------------------------------- parent -> worker


class Deliver(msgspec.Struct, tag=True, frozen=True, kw_only=True):
    """One inbound message for the agent.  `msg_id` is the spool id: unique for the life
    of the installation, so a worker can tell a redelivery from a new message."""

    msg_id: int
    platform: str
    session_key: str
    text: str
    sender: str = ""
    depth: int = 0  # how many agent-to-agent hops led here (bounds send_to_agent loops)


class Answer(msgspec.Struct, tag=True, frozen=True, kw_only=True):
    """The outcome of an `Ask`: the other agent's replies, or why there are none."""

    request_id: str
    text: str = ""
    error: str | None = None


class Ping(msgspec.Struct, tag=True, frozen=True):
    seq: int


class Stop(msgspec.Struct, tag=True, frozen=True):
    """Finish the turns in progress, then exit 0."""


ParentFrame = Deliver | Answer | Ping | Stop


class Credentials(msgspec.Struct, frozen=True):
    """The worker's first frame, before any `ParentFrame`: its agent's API key, read by the
    daemon.  It goes straight to the worker, never through the zygote (whose memory every
    later worker inherits) nor in the spec (which is compared, logged and shown)."""

    api_key: str | None = None
    problem: str | None = None  # why a configured key could not be read


# --------------------------------------------------------------------------- worker -> parent

Id = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
"""Integers a worker sends: msgpack carries up to 2**64 - 1, SQLite stores up to 2**63 - 1,
so a larger one is refused at decoding (a protocol error) instead of failing in the spool."""


class Hello(msgspec.Struct, tag=True, frozen=True):
    agent_id: str
    pid: Id
    landlock: int = 0  # the Landlock ABI the worker confined itself with; 0 = none


class Reply(msgspec.Struct, tag=True, frozen=True, kw_only=True):
    """One outgoing message, for the conversation `msg_id` came from.  (`msg_id`, `seq`)
    is unique: a re-run of the same message produces the same pairs, and the parent stores
    each pair once."""

    msg_id: Id
    seq: Id
    text: str
    files: tuple[str, ...] = ()  # paths in the agent's workspace or shared paths, to send along


class Typing(msgspec.Struct, tag=True, frozen=True):
    session_key: str


class Done(msgspec.Struct, tag=True, frozen=True, kw_only=True):
    msg_id: Id
    error: str | None = None


class Stats(msgspec.Struct, frozen=True, kw_only=True):
    turns: int = 0
    active_sessions: int = 0


class Pong(msgspec.Struct, tag=True, frozen=True):
    seq: Id
    stats: Stats = Stats()


class Log(msgspec.Struct, tag=True, frozen=True, kw_only=True):
    level: Literal["debug", "info", "warning", "error"]
    event: str
    session_key: str = ""
    fields: dict[str, str] = {}


class Inject(msgspec.Struct, tag=True, frozen=True, kw_only=True):
    """A message the agent gives itself in one of its conversations (a cron job firing).
    `external_id` makes a repeat after a crash a no-op.  The parent accepts it only for a
    conversation that was routed to this agent before."""

    external_id: str
    platform: str
    session_key: str
    text: str


class Ask(msgspec.Struct, tag=True, frozen=True, kw_only=True):
    """send_to_agent: ask agent `to` (if `can_message` allows) in session agent:<me>:<to>.
    `request_id` is stable across a re-run of the same turn, so a repeat is recognised."""

    request_id: str
    to: str
    text: str
    depth: Id


WorkerFrame = Hello | Reply | Typing | Done | Pong | Log | Inject | Ask


# --------------------------------------------------------------------------- parent <-> zygote


class SpawnRequest(msgspec.Struct, tag=True, frozen=True):
    """Sent with the worker's end of its socketpair attached (SCM_RIGHTS)."""

    request_id: int
    spec: WorkerSpec


class Spawned(msgspec.Struct, tag=True, frozen=True):
    request_id: int
    pid: int


class SpawnFailed(msgspec.Struct, tag=True, frozen=True):
    request_id: int
    error: str


ZygoteFrame = Spawned | SpawnFailed


# --------------------------------------------------------------------------- control socket


class StatusRequest(msgspec.Struct, tag="status", frozen=True):
    pass


class AgentsRequest(msgspec.Struct, tag="agents", frozen=True):
    pass


class RoutesRequest(msgspec.Struct, tag="routes", frozen=True):
    key: str | None = None  # also show where this session key goes


class ReloadRequest(msgspec.Struct, tag="reload", frozen=True):
    wait: bool = False


class AgentCommand(msgspec.Struct, tag="agent", frozen=True):
    action: Literal["start", "stop", "restart"]
    agent: str


class LogsRequest(msgspec.Struct, tag="logs", frozen=True):
    """An agent's recent log lines, those numbered above `after` (to follow them)."""

    agent: str
    after: int = 0


ControlRequest = StatusRequest | AgentsRequest | RoutesRequest | ReloadRequest | AgentCommand | LogsRequest


class ControlReply(msgspec.Struct, frozen=True, omit_defaults=True):
    ok: bool
    data: Any = None
    error: str = ""


# --------------------------------------------------------------------------- local platform socket


class LocalAttach(msgspec.Struct, tag="attach", frozen=True):
    """Subscribe this connection to a session key: replies for it, including ones that
    were waiting from before a restart, come to this connection."""

    session_key: str


class LocalSend(msgspec.Struct, tag="send", frozen=True, kw_only=True):
    """A message typed by a local user.  `client_id` makes a resend after a lost
    connection idempotent; `agent`, if set, picks the agent instead of the routes."""

    session_key: str
    text: str
    client_id: str
    agent: str | None = None


class LocalAttached(msgspec.Struct, tag="attached", frozen=True):
    session_key: str
    pending: list[int]


class LocalAccepted(msgspec.Struct, tag="accepted", frozen=True):
    client_id: str
    msg_id: int
    agent: str | None


class LocalReply(msgspec.Struct, tag="reply", frozen=True, kw_only=True):
    """One reply.  (`msg_id`, `seq`) names it: a reply written to the socket just before
    the daemon died is sent again after the restart, and a client drops the repeat."""

    msg_id: int
    seq: int = 0
    session_key: str
    agent: str
    text: str
    files: list[str] = []  # absolute paths of files the agent sent


class LocalDone(msgspec.Struct, tag="done", frozen=True):
    msg_id: int
    error: str | None = None


class LocalError(msgspec.Struct, tag="error", frozen=True):
    error: str


LocalFrame = (
    LocalAttach | LocalSend | LocalAttached | LocalAccepted | LocalReply | LocalDone | LocalError
)


# --------------------------------------------------------------------------- framing


def frame(body: bytes) -> bytes:
    """Prefix an encoded body with its length."""
    if len(body) > MAX_FRAME:
        raise ProtocolError(f"frame of {len(body)} bytes exceeds the {MAX_FRAME} byte cap")
    return _HEADER.pack(len(body)) + body


class FrameReader:
    """Splits a byte stream into frame bodies.

    Feed it whatever the socket returned; it yields complete bodies and keeps the rest.
    It never buffers more than one frame, so a peer cannot make it grow past `MAX_FRAME`.
    """

    __slots__ = ("_buffer", "_max")

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        self._buffer = bytearray()
        self._max = max_frame

    def feed(self, data: bytes) -> list[bytes]:
        self._buffer += data
        bodies: list[bytes] = []
        buffer = self._buffer
        offset = 0
        while len(buffer) - offset >= 4:
            (length,) = _HEADER.unpack_from(buffer, offset)
            if length > self._max:
                raise ProtocolError(f"frame of {length} bytes exceeds the {self._max} byte cap")
            end = offset + 4 + length
            if len(buffer) < end:
                break
            bodies.append(bytes(buffer[offset + 4 : end]))
            offset = end
        if offset:
            del buffer[:offset]
        return bodies

    def close(self) -> None:
        """Call at end of stream: leftover bytes mean the peer died mid-frame."""
        if self._buffer:
            raise ProtocolError(f"stream ended inside a frame ({len(self._buffer)} bytes pending)")


class Codec:
    """Encoder/decoder pair for one direction of one conversation."""

    __slots__ = ("_encoder", "_decoder")

    def __init__(self, kind: Any, *, json: bool = False) -> None:
        if json:
            self._encoder: Any = msgspec.json.Encoder()
            self._decoder: Any = msgspec.json.Decoder(kind)
        else:
            self._encoder = msgspec.msgpack.Encoder()
            self._decoder = msgspec.msgpack.Decoder(kind)

    def encode(self, message: Any) -> bytes:
        return frame(self._encoder.encode(message))

    def decode(self, body: bytes) -> Any:
        try:
            return self._decoder.decode(body)
        # msgspec raises UnicodeDecodeError for a msgpack tag that is not UTF-8
        except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError) as exc:
            raise ProtocolError(f"undecodable frame: {exc}") from None
        except RecursionError:  # msgspec's answer to arrays nested thousands deep
            raise ProtocolError("undecodable frame: nested too deeply") from None
