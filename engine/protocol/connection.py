"""One end of a remote-assist connection, without I/O (in the manner of h11).

The caller moves the bytes::

    conn = Connection(Role.VIEWER)
    sock.sendall(conn.send(Hello(role=Role.VIEWER, name="Bob", ticket_id=ticket.id)))
    conn.receive_data(sock.recv(65536))      # b"" once the peer has closed
    event = conn.next_event()                # a message, NEED_DATA or ConnectionClosed

Every message sent or received moves the state machine of `engine.protocol.state`; a move it
does not allow raises LocalProtocolError (we sent it) or RemoteProtocolError (the peer did).
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.protocol import wire
from engine.protocol.errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from engine.protocol.messages import PROTOCOL_VERSION, Bye, Error, Hello, Message, Reason, Role
from engine.protocol.state import State, next_state

__all__ = ["NEED_DATA", "Connection", "ConnectionClosed", "Event", "NeedData"]


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
        max_handshake_message_size: int = wire.MAX_HANDSHAKE_MESSAGE_SIZE,
    ) -> None:
        self.our_role = role
        self.their_role = Role.VIEWER if role is Role.SHARER else Role.SHARER
        self.max_message_size = max_message_size
        self.max_handshake_message_size = max_handshake_message_size
        self._state = State.HELLO
        self._buffer = bytearray()
        self._eof = False
        self._we_closed = False
        self._remote_error: RemoteProtocolError | None = None

    @property
    def state(self) -> State:
        return self._state

    def send(self, message: Message) -> bytes:
        """The bytes that carry `message`; the state moves only if it may be sent now."""
        new = next_state(self.our_role, self._state, message, LocalProtocolError)
        _check_hello(self.our_role, message, LocalProtocolError)
        data = wire.encode(message)
        self._state = new
        if isinstance(message, Bye | Error):
            self._we_closed = True
        return data

    def receive_data(self, data: bytes) -> None:
        """Bytes from the peer, in order; b"" means it closed its side."""
        if self._eof:
            raise LocalProtocolError("receive_data() after the end of the stream")
        if data:
            self._buffer += data
        else:
            self._eof = True

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
            return ConnectionClosed() if self._eof else NEED_DATA
        buffer = self._buffer
        if len(buffer) >= wire.LENGTH.size:
            (length,) = wire.LENGTH.unpack_from(buffer)
            cap = (self.max_message_size if self._state is State.SESSION
                   else self.max_handshake_message_size)
            if not 1 <= length <= cap:
                raise RemoteProtocolError(
                    f"the peer announced a {length}-byte message in state {self._state.name}; "
                    f"the limit is 1 to {cap}"
                )
            end = wire.LENGTH.size + length
            if len(buffer) >= end:
                # Released by hand: a view kept alive (by a traceback, say) would pin the buffer.
                body = memoryview(buffer)[wire.HEADER.size:end]
                try:
                    message = wire.decode_body(buffer[wire.LENGTH.size], body)
                finally:
                    body.release()
                del buffer[:end]
                self._state = next_state(self.their_role, self._state, message,
                                         RemoteProtocolError)
                _check_hello(self.their_role, message, RemoteProtocolError)
                return message
        if not self._eof:
            return NEED_DATA
        if buffer:
            raise RemoteProtocolError(
                f"the peer closed the connection in the middle of a message "
                f"({len(buffer)} bytes of it arrived)"
            )
        return ConnectionClosed()


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
