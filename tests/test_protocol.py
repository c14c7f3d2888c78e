"""The sans-I/O protocol: two connections paired in memory, bytes moved by hand."""

from __future__ import annotations

import itertools
import math
import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.protocol import (
    NEED_DATA,
    PROTOCOL_VERSION,
    AuthChallenge,
    AuthProof,
    AuthResult,
    Buttons,
    Bye,
    Chat,
    Connection,
    ConnectionClosed,
    ConsentPending,
    ControlDeny,
    ControlGrant,
    ControlPause,
    ControlRequest,
    ControlRevoke,
    Cursor,
    Error,
    Frame,
    FrameAck,
    Hello,
    Key,
    LocalProtocolError,
    Message,
    MessageType,
    Permission,
    Ping,
    Pointer,
    Pong,
    Reason,
    RefreshRequest,
    RemoteProtocolError,
    Role,
    Scroll,
    SessionStart,
    State,
    wire,
)
from engine.protocol.connection import ROOM_SIZE
from engine.protocol.state import TRANSITIONS

SHARER, VIEWER = Role.SHARER, Role.VIEWER

HANDSHAKE: list[tuple[Role, Message]] = [
    (VIEWER, Hello(role=VIEWER, name="Bob", ticket_id=bytes(range(16)))),
    (SHARER, Hello(role=SHARER, name="Alice")),
    (SHARER, AuthChallenge(nonce=b"n" * 32)),
    (VIEWER, AuthProof(proof=b"p" * 32)),
    (SHARER, AuthResult()),
    (SHARER, ConsentPending(session_code="123 456")),
    (SHARER, SessionStart(session_code="123 456", sharer_name="Alice", viewer_name="Bob",
                          permissions=Permission.VIEW | Permission.CONTROL)),
]
SESSION: list[tuple[Role, Message]] = [
    (SHARER, Frame(seq=1, data=bytes(range(256)) * 40)),
    (VIEWER, FrameAck(seq=1)),
    (SHARER, Cursor(x=-5, y=7, visible=True, hot_x=1, hot_y=2, width=2, height=1,
                    pixels=b"\x00\x01\x02\x03" * 2)),
    (VIEWER, Chat(sender="Bob", text="héllo 👋", time=1_900_000_000.25)),
    (SHARER, Chat(sender="Alice", text="", time=0.0)),
    (VIEWER, ControlRequest()),
    (SHARER, ControlGrant()),
    (SHARER, ControlPause(seconds=1.0, reason="the novice is typing")),
    (VIEWER, Pointer(x=100, y=-3, buttons=Buttons.LEFT | Buttons.RIGHT)),
    (VIEWER, Key(keysym=0xFF1B, down=True)),
    (VIEWER, Scroll(dx=0, dy=-3)),
    (VIEWER, RefreshRequest()),
    (VIEWER, Ping(token=2**64 - 1)),
    (SHARER, Pong(token=2**64 - 1)),
    (SHARER, ControlRevoke(reason="the novice pressed Esc")),
    (VIEWER, ControlRequest()),
    (SHARER, ControlDeny(reason="not now")),
    (VIEWER, ControlRevoke()),
]
# One example of every message, to try in every state.
SAMPLES: dict[type[Any], Message] = {type(m): m for _, m in [*HANDSHAKE, *SESSION]}
SAMPLES[Error] = Error(reason="x")
SAMPLES[Bye] = Bye(reason="x")


def pair() -> dict[Role, Connection]:
    return {SHARER: Connection(SHARER), VIEWER: Connection(VIEWER)}


def other(role: Role) -> Role:
    return VIEWER if role is SHARER else SHARER


def events(conn: Connection) -> list[Any]:
    out = []
    while (event := conn.next_event()) is not NEED_DATA:
        out.append(event)
        if isinstance(event, ConnectionClosed):
            break
    return out


def converse(conns: dict[Role, Connection], script: list[tuple[Role, Message]],
             chunk: int = 1) -> None:
    """Send each message and feed it to the other side `chunk` bytes at a time."""
    for sender, message in script:
        data = conns[sender].send(message)
        receiver = conns[other(sender)]
        received: list[Any] = []
        for i in range(0, len(data), chunk):
            assert not received, "a message came out before its last byte arrived"
            receiver.receive_data(data[i:i + chunk])
            received += events(receiver)
        assert received == [message]
        assert conns[SHARER].state is conns[VIEWER].state


def in_state(state: State) -> dict[Role, Connection]:
    """A pair of connections that have reached `state` through the real handshake."""
    conns = pair()
    for sender, message in HANDSHAKE:
        if conns[SHARER].state is state:
            break
        converse(conns, [(sender, message)], chunk=4096)
    assert conns[SHARER].state is state
    return conns


def test_whole_conversation_fed_one_byte_at_a_time():
    conns = pair()
    converse(conns, HANDSHAKE + SESSION, chunk=1)
    assert conns[VIEWER].state is State.SESSION
    converse(conns, [(VIEWER, Bye(reason="thanks"))])
    assert conns[SHARER].state is State.CLOSED


@given(cuts=st.sets(st.integers(1, 400)))
@settings(max_examples=100, deadline=None)
def test_messages_survive_any_split(cuts):
    conns = in_state(State.SESSION)
    sent = [m for s, m in SESSION if s is VIEWER]
    stream = b"".join(conns[VIEWER].send(m) for m in sent)
    bounds = [0, *sorted(c for c in cuts if c < len(stream)), len(stream)]
    got: list[Any] = []
    for start, end in itertools.pairwise(bounds):
        conns[SHARER].receive_data(stream[start:end])
        got += events(conns[SHARER])
    assert got == sent


LARGE_FRAMES = [Frame(seq=n, data=bytes([n]) * size)
                for n, size in enumerate([300_000, 70_000, 10, 1_000_000, 65_536], 1)]


@given(fills=st.lists(st.integers(1, 400_000), min_size=1, max_size=40))
@settings(max_examples=60, deadline=None)
def test_large_messages_arrive_whole_through_the_buffer_interface(fills):
    """Bytes written where `receive_buffer` says, in any amounts, make the same messages;
    a large one is read straight into its own buffer of exactly its size."""
    conns = in_state(State.SESSION)
    stream = memoryview(b"".join(conns[SHARER].send(m) for m in LARGE_FRAMES))
    viewer = conns[VIEWER]
    got: list[Any] = []
    sizes = itertools.cycle(fills)
    while stream:
        room = viewer.receive_buffer()
        assert len(room) >= 1
        count = min(len(room), len(stream), next(sizes))
        room[:count] = stream[:count]
        viewer.received(count)
        stream = stream[count:]
        got += events(viewer)
    assert got == LARGE_FRAMES
    for frame in got:
        # One longer than the room cannot arrive whole with others: it has a buffer of its
        # own, and its pixels are a view of that buffer, not a copy.
        if len(frame.data) > ROOM_SIZE:
            assert isinstance(frame.data, memoryview) and frame.data.readonly
        if len(frame.data) < wire.LARGE_VALUE:
            assert isinstance(frame.data, bytes)
        assert wire.encode(frame) == wire.encode(LARGE_FRAMES[frame.seq - 1])


def test_a_large_message_gets_a_buffer_of_its_size_only_within_the_cap():
    conns = in_state(State.SESSION)
    data = conns[SHARER].send(LARGE_FRAMES[3])
    viewer = conns[VIEWER]
    viewer.receive_data(data[:1000])
    assert len(viewer.receive_buffer()) == len(data) - 1000
    viewer.receive_data(b"")
    with pytest.raises(RemoteProtocolError, match="1000 bytes of it arrived"):
        viewer.next_event()
    hostile = in_state(State.SESSION)[VIEWER]
    hostile.receive_data(struct.pack("<I", wire.MAX_MESSAGE_SIZE + 1) + b"\x01")
    assert len(hostile.receive_buffer()) < wire.MAX_MESSAGE_SIZE
    with pytest.raises(RemoteProtocolError, match="limit"):
        hostile.next_event()


def test_several_messages_in_one_chunk():
    conns = in_state(State.SESSION)
    data = b"".join(conns[SHARER].send(m) for _, m in SESSION if _ is SHARER)
    conns[VIEWER].receive_data(data)
    assert events(conns[VIEWER]) == [m for s, m in SESSION if s is SHARER]


def test_every_message_type_has_exactly_one_layout():
    assert sorted(layout.wire_type for layout in wire.LAYOUTS.values()) == sorted(MessageType)
    assert set(SAMPLES) == set(wire.LAYOUTS)


# Field strategies derived from the wire table, so a new field is covered without new code.
_INT_RANGES = {"B": (0, 2**8 - 1), "H": (0, 2**16 - 1), "I": (0, 2**32 - 1),
               "Q": (0, 2**64 - 1),
               "h": (-(2**15), 2**15 - 1), "i": (-(2**31), 2**31 - 1)}


def _strategy(code: str, kind: Any) -> st.SearchStrategy[Any]:
    if kind is bool:
        return st.booleans()
    if kind is float:
        return st.floats(allow_nan=False, allow_infinity=False)
    if isinstance(kind, type) and issubclass(kind, Permission | Buttons):
        return st.builds(kind, st.integers(0, sum(m.value for m in kind)))
    if isinstance(kind, type) and issubclass(kind, Role | Reason):
        return st.sampled_from(list(kind))
    return st.integers(*_INT_RANGES[code])


def _message_strategy(layout: wire.Layout) -> st.SearchStrategy[Any]:
    codes = layout.fixed.format.lstrip("<")
    fields: dict[str, st.SearchStrategy[Any]] = {
        name: _strategy(code, kind)
        for (name, kind), code in zip(layout.fixed_fields, codes, strict=True)
    }
    for name, kind in layout.variable_fields:
        fields[name] = st.text() if kind is str else st.binary()
    return st.builds(layout.cls, **fields)


any_message = st.one_of([_message_strategy(layout) for layout in wire.LAYOUTS.values()])


def _decode(data: bytes) -> Message:
    length, wire_type = wire.HEADER.unpack_from(data)
    assert length == len(data) - 4
    return wire.decode_body(wire_type, memoryview(data)[5:])


@given(any_message)
@settings(max_examples=400, deadline=None)
def test_every_message_roundtrips(message):
    if isinstance(message, Hello):
        message = Hello(role=message.role, name=message.name, ticket_id=message.ticket_id)
    assert _decode(wire.encode(message)) == message


def test_a_frames_pixels_are_written_apart_and_the_rest_joined():
    pixels = bytes(range(256)) * (wire.LARGE_VALUE // 256)
    header, body = wire.encode_parts(Frame(seq=7, data=pixels))
    assert body is pixels  # not copied
    assert header + body == wire.encode(Frame(seq=7, data=pixels))
    assert len(header) == 13
    assert wire.encode_parts(Frame(seq=7, data=pixels[:-1])) == [
        wire.encode(Frame(seq=7, data=pixels[:-1]))]


def test_hot_messages_are_compact():
    assert len(wire.encode(Frame(seq=1, data=b""))) == 13
    assert len(wire.encode(FrameAck(seq=1))) == 9
    assert len(wire.encode(Pointer(x=1, y=1))) == 14
    assert len(wire.encode(Key(keysym=1, down=True))) == 10


@pytest.mark.parametrize("state", list(State))
@pytest.mark.parametrize("sender", list(Role))
def test_the_table_decides_every_move_both_ways(state, sender):
    for kind, message in SAMPLES.items():
        if isinstance(message, Hello):
            message = Hello(role=sender, name="x")
        legal = (sender, state, kind) in TRANSITIONS
        conns = in_state(state) if state is not State.CLOSED else closed_pair()
        if legal:
            data = conns[sender].send(message)
            conns[other(sender)].receive_data(data)
            assert events(conns[other(sender)]) == [message]
            continue
        with pytest.raises(LocalProtocolError) as local:
            conns[sender].send(message)
        assert conns[sender].state is state, "a refused send must not move the state"
        name = kind.__name__
        for text in (sender.name.lower(), state.name, name):
            assert text in str(local.value)
        # The same bytes, forged past the local check, are refused by the peer; except by a
        # peer that said Bye itself, which drops whatever still arrives.
        conns[other(sender)].receive_data(wire.encode(message))
        if state is State.CLOSED and other(sender) is VIEWER:
            assert conns[VIEWER].next_event() is NEED_DATA
            continue
        with pytest.raises(RemoteProtocolError) as remote:
            conns[other(sender)].next_event()
        for text in (sender.name.lower(), state.name, name):
            assert text in str(remote.value)


def closed_pair() -> dict[Role, Connection]:
    """Closed by the viewer's Bye."""
    conns = in_state(State.HELLO)
    converse(conns, [(VIEWER, Bye())])
    return conns


@pytest.mark.parametrize("state", [s for s in State if s not in (State.SESSION, State.CLOSED)])
def test_no_session_message_before_the_session(state):
    for sender, message in SESSION:
        conns = in_state(state)
        with pytest.raises(LocalProtocolError):
            conns[sender].send(message)
        conns[other(sender)].receive_data(wire.encode(message))
        with pytest.raises(RemoteProtocolError):
            conns[other(sender)].next_event()


def test_a_refused_proof_closes_the_connection():
    conns = in_state(State.VERDICT)
    converse(conns, [(SHARER, AuthResult(code=Reason.WRONG_PASSWORD, reason="wrong password"))])
    assert conns[VIEWER].state is State.CLOSED
    with pytest.raises(LocalProtocolError):
        conns[SHARER].send(ConsentPending(session_code="1"))


def test_messages_after_our_bye_are_dropped_quietly():
    conns = in_state(State.SESSION)
    frame = conns[SHARER].send(Frame(seq=9, data=b"late"))
    conns[VIEWER].send(Bye())
    conns[VIEWER].receive_data(frame)
    assert conns[VIEWER].next_event() is NEED_DATA
    conns[VIEWER].receive_data(b"")
    assert isinstance(conns[VIEWER].next_event(), ConnectionClosed)


def test_clean_end_of_stream_is_an_event():
    conns = in_state(State.HELLO)
    conns[SHARER].receive_data(b"")
    assert events(conns[SHARER]) == [ConnectionClosed()]
    with pytest.raises(LocalProtocolError):
        conns[SHARER].receive_data(b"more")


@pytest.mark.parametrize("message", [m for _, m in HANDSHAKE[:1]] + [m for _, m in SESSION[:4]])
def test_truncation_at_every_byte_is_a_remote_error(message):
    data = wire.encode(message)
    for cut in range(1, len(data)):
        conns = in_state(State.SESSION) if not isinstance(message, Hello) else pair()
        receiver = conns[SHARER] if isinstance(message, Hello | FrameAck | Chat) else conns[VIEWER]
        receiver.receive_data(data[:cut])
        assert receiver.next_event() is NEED_DATA
        receiver.receive_data(b"")
        with pytest.raises(RemoteProtocolError, match="middle of a message"):
            receiver.next_event()


def header(length: int, wire_type: int | None = None) -> bytes:
    return struct.pack("<I", length) + (b"" if wire_type is None else bytes([wire_type]))


@pytest.mark.parametrize("receiver, data", [
    (VIEWER, header(wire.MAX_FRAME_SIZE + 1)),  # no type allows it: refused before the type
    (VIEWER, header(wire.MAX_MESSAGE_SIZE + 1, MessageType.CHAT)),
    (VIEWER, header(wire.MAX_FRAME_SIZE + 1, MessageType.FRAME)),
    (SHARER, header(wire.MAX_MESSAGE_SIZE + 1)),
    # Frames come from the sharer only: the viewer cannot use their cap.
    (SHARER, header(wire.MAX_MESSAGE_SIZE + 1, MessageType.FRAME)),
])
def test_oversize_is_refused_from_the_header_alone(receiver, data):
    conn = in_state(State.SESSION)[receiver]
    conn.receive_data(data)
    assert len(conn.receive_buffer()) <= ROOM_SIZE  # nothing allocated for it
    with pytest.raises(RemoteProtocolError, match="limit"):
        conn.next_event()


def test_a_frame_may_be_larger_than_other_messages():
    """A whole 5K screen that does not compress is 44 MB: over the cap of other messages."""
    conns = in_state(State.SESSION)
    frame = Frame(seq=7, data=bytes(range(256)) * (wire.MAX_MESSAGE_SIZE // 256 + 1))
    converse(conns, [(SHARER, frame)], chunk=4 << 20)
    with pytest.raises(LocalProtocolError, match="cap"):
        conns[VIEWER].send(Chat(sender="B", text="x" * wire.MAX_MESSAGE_SIZE, time=0.0))


def test_handshake_messages_have_a_smaller_cap():
    big = Hello(role=VIEWER, name="x" * (wire.MAX_HANDSHAKE_MESSAGE_SIZE + 1))
    data = wire.encode(big)
    sharer = Connection(SHARER)
    sharer.receive_data(data[:4])
    with pytest.raises(RemoteProtocolError, match="limit"):
        sharer.next_event()
    # The same size is fine once the session runs.
    conns = in_state(State.SESSION)
    chat = Chat(sender="x", text="y" * (wire.MAX_HANDSHAKE_MESSAGE_SIZE + 1), time=0.0)
    converse(conns, [(SHARER, chat)], chunk=1 << 20)


def test_a_zero_length_frame_is_refused():
    sharer = Connection(SHARER)
    sharer.receive_data(b"\0\0\0\0")
    with pytest.raises(RemoteProtocolError):
        sharer.next_event()


def test_sending_more_than_the_cap_is_a_local_error():
    conns = in_state(State.SESSION)
    with pytest.raises(LocalProtocolError, match="cap"):
        conns[SHARER].send(Frame(seq=1, data=bytes(wire.MAX_FRAME_SIZE)))


@given(st.binary(min_size=1, max_size=300))
@settings(max_examples=300, deadline=None)
def test_garbage_before_the_handshake_is_a_clean_error(garbage):
    sharer = Connection(SHARER)
    sharer.receive_data(garbage)
    sharer.receive_data(b"")
    try:
        while not isinstance(sharer.next_event(), ConnectionClosed):
            pass
    except RemoteProtocolError:
        return


@given(st.sampled_from([*sorted(MessageType), 0, 0x55, 0xFF]), st.binary(max_size=64))
@settings(max_examples=500, deadline=None)
def test_garbage_bodies_in_session_are_clean_errors(wire_type, body):
    for receiver_role in Role:
        conns = in_state(State.SESSION)
        receiver = conns[receiver_role]
        receiver.receive_data(wire.HEADER.pack(len(body) + 1, wire_type) + body)
        try:
            event = receiver.next_event()
        except RemoteProtocolError:
            continue
        # If it decoded, it is a legal message from the peer and re-encodes to the same bytes.
        assert wire.encode(event) == wire.HEADER.pack(len(body) + 1, wire_type) + body


def session_viewer_receives(body: bytes, wire_type: MessageType) -> Connection:
    conns = in_state(State.SESSION)
    conns[VIEWER].receive_data(wire.HEADER.pack(len(body) + 1, wire_type) + body)
    return conns[VIEWER]


@pytest.mark.parametrize(("wire_type", "body", "problem"), [
    (0x55, b"", "unknown message type 0x55"),
    (MessageType.FRAME, b"\1\0\0", "too short"),
    (MessageType.FRAME, b"\1\0\0\0\5\0\0\0abc", "past the end"),
    (MessageType.FRAME, b"\1\0\0\0\0\0\0\0extra", "after the last field"),
    (MessageType.FRAME, b"\1\0\0\0\0\0", "cut off"),
    (MessageType.CHAT, struct.pack("<d", math.nan) + b"\0" * 8, "finite"),
    (MessageType.CHAT, struct.pack("<d", 0) + b"\2\0\0\0\xc3\x28" + b"\0" * 4, "malformed Chat"),
    (MessageType.CURSOR, struct.pack("<iiBHHHH", 0, 0, 2, 0, 0, 0, 0) + b"\0" * 4, "boolean"),
    (MessageType.CONTROL_REQUEST, b"", "sharer may not send ControlRequest"),
])
def test_malformed_bodies(wire_type, body, problem):
    receiver = session_viewer_receives(body, wire_type)
    with pytest.raises(RemoteProtocolError, match=problem):
        receiver.next_event()


def test_bad_enum_and_flag_values():
    conns = in_state(State.SESSION)
    conns[SHARER].receive_data(wire.HEADER.pack(10, MessageType.POINTER)
                               + struct.pack("<iiB", 0, 0, 0x80))
    with pytest.raises(RemoteProtocolError, match="Buttons"):
        conns[SHARER].next_event()
    conns = in_state(State.SESSION)
    conns[SHARER].receive_data(wire.HEADER.pack(6, MessageType.BYE) + b"\xee\0\0\0\0")
    with pytest.raises(RemoteProtocolError, match="Bye"):
        conns[SHARER].next_event()


def test_an_error_sticks_and_leaves_the_buffer_usable():
    conns = in_state(State.SESSION)
    receiver = session_viewer_receives(b"\1\0\0", MessageType.FRAME)
    with pytest.raises(RemoteProtocolError) as first:
        receiver.next_event()
    receiver.receive_data(b"more bytes")
    with pytest.raises(RemoteProtocolError) as again:
        receiver.next_event()
    assert again.value is first.value
    assert conns  # the pair stays alive beside the broken one


@pytest.mark.parametrize("message", [
    Frame(seq=-1, data=b""),
    Frame(seq=2**32, data=b""),
    Frame(seq=1, data="text"),  # type: ignore[arg-type]
    Chat(sender="a", text="b", time=math.inf),
    Chat(sender=b"a", text="b", time=0.0),  # type: ignore[arg-type]
    Pointer(x=0, y=0, buttons=8),  # type: ignore[arg-type]
    Key(keysym=1, down=2),  # type: ignore[arg-type]
    Chat(sender="\ud800", text="", time=0.0),
])
def test_unencodable_messages_are_local_errors(message):
    conns = in_state(State.SESSION)
    sender = SHARER if type(message) in (Frame, Chat) else VIEWER
    with pytest.raises(LocalProtocolError, match="cannot encode"):
        conns[sender].send(message)
    assert conns[sender].state is State.SESSION


def test_version_mismatch_names_both_versions():
    sharer = Connection(SHARER)
    sharer.receive_data(wire.encode(Hello(version=PROTOCOL_VERSION + 1, role=VIEWER, name="B")))
    with pytest.raises(RemoteProtocolError) as refused:
        sharer.next_event()
    assert refused.value.code is Reason.UNSUPPORTED_VERSION
    assert f"version {PROTOCOL_VERSION + 1}" in str(refused.value)
    with pytest.raises(LocalProtocolError):
        Connection(VIEWER).send(Hello(version=PROTOCOL_VERSION + 1, role=VIEWER, name="B"))


def test_hello_must_name_the_senders_role():
    with pytest.raises(LocalProtocolError, match="said hello as the sharer"):
        Connection(VIEWER).send(Hello(role=SHARER, name="B"))
    sharer = Connection(SHARER)
    sharer.receive_data(wire.encode(Hello(role=SHARER, name="B")))
    with pytest.raises(RemoteProtocolError, match="said hello as the sharer"):
        sharer.next_event()


def test_auth_result_ok_is_its_code():
    assert AuthResult().ok
    assert not AuthResult(code=Reason.EXPIRED).ok
