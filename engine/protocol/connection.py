"""One end of a remote-assist connection, without I/O (in the manner of h11).

The caller moves the bytes::

    conn = Connection(Role.VIEWER)
    sock.sendall(conn.send(Hello(role=Role.VIEWER, name="Bob", ticket_id=ticket.id)))
    conn.receive_data(sock.recv(65536))      # b"" once the peer has closed
    event = conn.next_event()                # a message, NEED_DATA or ConnectionClosed

A transport that can read into a buffer it is given (asyncio's `BufferedProtocol`) asks
`receive_buffer` where to put the next bytes and tells `received` how many came: a large
message then arrives straight in a buffer of its own, allocated once at its announced size,
instead of being copied through a growing one (a changing screen sends megabytes a frame).

Every message sent or received moves the state machine of `engine.protocol.state`; a move it
does not allow raises LocalProtocolError (we sent it) or RemoteProtocolError (the peer did).
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.protocol import wire
from engine.protocol.errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from engine.protocol.messages import (
    PROTOCOL_VERSION,
    Bye,
    Error,
    Hello,
    Message,
    MessageType,
    Reason,
    Role,
)
from engine.protocol.state import State, next_state

__all__ = ["NEED_DATA", "Connection", "ConnectionClosed", "Event", "NeedData"]

# A message announced at least this long, and not yet all here, gets a buffer of its own.
LARGE_MESSAGE = 64 * 1024
# The room `receive_buffer` offers for everything else.
ROOM_SIZE = 256 * 1024


class NeedData:
    """`next_event` has no whole message yet: feed more bytes."""

    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA = NeedData()


@dataclass(frozen=True, slots=True)
class ConnectionClosed:
    """The peer closed its side of the stream between two messages."""


Event = Message | NeedData | ConnectionClosed


class Connection:
    """The protocol state of one end; `role` is the side this object speaks for."""

    def __init__(
        self,
        role: Role,
        *,
        max_message_size: int = wire.MAX_MESSAGE_SIZE,
        max_frame_size: int = wire.MAX_FRAME_SIZE,
        max_handshake_message_size: int = wire.MAX_HANDSHAKE_MESSAGE_SIZE,
    ) -> None:
        self.our_role = role
        self.their_role = Role.VIEWER if role is Role.SHARER else Role.SHARER
        self.max_message_size = max_message_size
        self.max_frame_size = max_frame_size
        self.max_handshake_message_size = max_handshake_message_size
        self._state = State.HELLO
        self._buffer = bytearray()
        self._room = bytearray(ROOM_SIZE)
        # The large message being received (length prefix included), and how much has come.
        self._large: bytearray | None = None
        self._large_filled = 0
        self._eof = False
        self._we_closed = False
        self._remote_error: RemoteProtocolError | None = None

    @property
    def state(self) -> State:
        return self._state

    @property
    def buffered(self) -> int:
        """Bytes received and not yet taken as messages, besides a large message's own."""
        return len(self._buffer)

    def send(self, message: Message) -> bytes:
        """The bytes that carry `message`; the state moves only if it may be sent now."""
        return b"".join(self.send_parts(message))

    def send_parts(self, message: Message) -> list[bytes | memoryview]:
        """`send`, in pieces to write in order (`wire.encode_parts`): a frame's pixels are
        not copied next to its header."""
        new = next_state(self.our_role, self._state, message, LocalProtocolError)
        _check_hello(self.our_role, message, LocalProtocolError)
        parts = wire.encode_parts(message)
        self._state = new
        if isinstance(message, Bye | Error):
            self._we_closed = True
        return parts

    def receive_data(self, data: bytes) -> None:
        """Bytes from the peer, in order; b"" means it closed its side."""
        if self._eof:
            raise LocalProtocolError("receive_data() after the end of the stream")
        if not data:
            self._eof = True
            return
        view = memoryview(data)
        while view:
            room = self.receive_buffer()
            count = min(len(room), len(view))
            room[:count] = view[:count]
            self.received(count)
            view = view[count:]

    def receive_buffer(self, size_hint: int = ROOM_SIZE) -> memoryview:
        """Where the peer's next bytes may be written: at least one byte of room, the rest
        of a large message when one is arriving. Say how many were written with `received`.
        `size_hint`, what the transport has to give, does not change the answer: a large
        message takes as much as comes, and the room for small ones is ROOM_SIZE."""
        if self._eof:
            raise LocalProtocolError("receive_buffer() after the end of the stream")
        large = self._large
        if large is not None and self._large_filled < len(large):
            return memoryview(large)[self._large_filled:]
        return memoryview(self._room)

    def received(self, count: int) -> None:
        """`count` bytes were written at the start of the last `receive_buffer`."""
        if self._large_missing():  # nothing has changed since: the same answer as there
            self._large_filled += count
        else:
            self._buffer += memoryview(self._room)[:count]
            self._begin_large()

    def _large_missing(self) -> bool:
        return self._large is not None and self._large_filled < len(self._large)

    def _cap(self, wire_type: int) -> int:
        """The longest message of this type the peer may send now."""
        if self._state is not State.SESSION:
            return self.max_handshake_message_size
        if wire_type == MessageType.FRAME and self.their_role is Role.SHARER:
            return self.max_frame_size
        return self.max_message_size

    def _begin_large(self) -> None:
        """Move a large message that has begun to arrive into a buffer of its own."""
        buffer = self._buffer
        if self._large is not None or self._we_closed or len(buffer) < wire.HEADER.size:
            return
        length, wire_type = wire.HEADER.unpack_from(buffer)
        end = wire.LENGTH.size + length
        # A length over the cap is refused by next_event before anything is allocated.
        if not LARGE_MESSAGE <= length <= self._cap(wire_type) or len(buffer) >= end:
            return
        self._large = bytearray(end)
        self._large[:len(buffer)] = buffer
        self._large_filled = len(buffer)
        buffer.clear()

    def next_event(self) -> Event:
        """The next whole message from the peer, NEED_DATA, or ConnectionClosed."""
        if self._remote_error is not None:
            raise self._remote_error
        try:
            return self._next_event()
        except RemoteProtocolError as exc:
            self._remote_error = exc
            raise

    def _next_event(self) -> Event:
        if self._we_closed:
            # Whatever the peer sent before it saw our Bye or Error is of no use now.
            self._buffer.clear()
            self._large = None
            return ConnectionClosed() if self._eof else NEED_DATA
        large = self._large
        if large is not None and not self._large_missing():
            self._large = None
            message = self._parse(large, len(large), owned=True)
            self._begin_large()
            return message
        buffer = self._buffer
        if large is None and len(buffer) >= wire.LENGTH.size:
            (length,) = wire.LENGTH.unpack_from(buffer)
            # The cap depends on the type; until its byte is here, the largest any type has
            # now (a frame's), so that a length no type allows is refused at once.
            cap = self._cap(buffer[wire.LENGTH.size] if len(buffer) > wire.LENGTH.size
                            else MessageType.FRAME)
            if not 1 <= length <= cap:
                raise RemoteProtocolError(
                    f"the peer announced a {length}-byte message in state {self._state.name}; "
                    f"the limit is 1 to {cap}"
                )
            end = wire.LENGTH.size + length
            if len(buffer) >= end:
                message = self._parse(buffer, end)
                del buffer[:end]
                self._begin_large()
                return message
        if not self._eof:
            return NEED_DATA
        arrived = len(buffer) + (self._large_filled if large is not None else 0)
        if arrived:
            raise RemoteProtocolError(
                f"the peer closed the connection in the middle of a message "
                f"({arrived} bytes of it arrived)"
            )
        return ConnectionClosed()

    def _parse(self, data: bytearray, end: int, *, owned: bool = False) -> Message:
        """The message that fills data[:end]; the state moves past it. `owned`: `data` is
        the message's own buffer, never written again, so the message may keep views of it."""
        # Released by hand: a view kept alive (by a traceback, say) would pin the buffer.
        body = memoryview(data)[wire.HEADER.size:end]
        try:
            message = wire.decode_body(data[wire.LENGTH.size], body, owned=owned)
        finally:
            body.release()
        self._state = next_state(self.their_role, self._state, message, RemoteProtocolError)
        _check_hello(self.their_role, message, RemoteProtocolError)
        return message


def _check_hello(sender: Role, message: Message, error: type[ProtocolError]) -> None:
    if not isinstance(message, Hello):
        return
    if message.role is not sender:
        raise error(f"the {sender.name.lower()} said hello as the {message.role.name.lower()}")
    if message.version != PROTOCOL_VERSION:
        raise error(
            f"the {sender.name.lower()} speaks protocol version {message.version} and this "
            f"remote-assist speaks version {PROTOCOL_VERSION}; both sides need the same "
            "version of remote-assist",
            code=Reason.UNSUPPORTED_VERSION,
        )
