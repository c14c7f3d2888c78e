"""Every message of the wire protocol, and the wire constants they use.

Messages are frozen, keyword-only dataclasses; code dispatches on ``type(message)``. How each
one is laid out in bytes is in `engine.protocol.wire`; which side may send which message, and
when, is in `engine.protocol.state`.

Grouped by direction (the sharer is the novice's side, the viewer the expert's):

===============  =============================================================
handshake        viewer: Hello, AuthProof
                 sharer: Hello, AuthChallenge, AuthResult, ConsentPending,
                 SessionStart
session          sharer: Frame, Cursor, ControlGrant, ControlDeny, ControlPause, Pong
                 viewer: FrameAck, ControlRequest, Pointer, Key, Scroll,
                 RefreshRequest, Ping
                 both:   Chat, ControlRevoke
any time         both:   Error, Bye
===============  =============================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, IntFlag

__all__ = [
    "NONCE_SIZE",
    "PROTOCOL_VERSION",
    "AuthChallenge",
    "AuthProof",
    "AuthResult",
    "Blob",
    "Buttons",
    "Bye",
    "Chat",
    "ConsentPending",
    "ControlDeny",
    "ControlGrant",
    "ControlPause",
    "ControlRequest",
    "ControlRevoke",
    "Cursor",
    "Error",
    "Frame",
    "FrameAck",
    "Hello",
    "Key",
    "Message",
    "MessageType",
    "Permission",
    "Ping",
    "Pointer",
    "Pong",
    "Reason",
    "RefreshRequest",
    "Role",
    "Scroll",
    "SessionStart",
]

PROTOCOL_VERSION = 1
# Bytes that may arrive as a read-only view of the buffer their message was received into,
# rather than copied out of it (`engine.protocol.wire.LARGE_VALUE`): a frame's pixels.
Blob = bytes | memoryview
# 256 bits of server randomness per attempt: a proof can never be replayed on another connection.
NONCE_SIZE = 32


class Role(IntEnum):
    SHARER = 1
    VIEWER = 2


class MessageType(IntEnum):
    """The type byte in front of every message body."""

    # handshake
    HELLO = 0x01
    AUTH_CHALLENGE = 0x02
    AUTH_PROOF = 0x03
    AUTH_RESULT = 0x04
    CONSENT_PENDING = 0x05
    SESSION_START = 0x06
    # session, sharer to viewer
    FRAME = 0x10
    CURSOR = 0x11
    CONTROL_GRANT = 0x12
    CONTROL_DENY = 0x13
    PONG = 0x14
    CONTROL_PAUSE = 0x15
    # session, viewer to sharer
    FRAME_ACK = 0x20
    CONTROL_REQUEST = 0x21
    POINTER = 0x22
    KEY = 0x23
    SCROLL = 0x24
    REFRESH_REQUEST = 0x25
    PING = 0x26
    # session, both ways
    CHAT = 0x30
    CONTROL_REVOKE = 0x31
    # any time, both ways
    ERROR = 0x7E
    BYE = 0x7F


class Reason(IntEnum):
    """Why a handshake was refused or a connection ended; the text beside it is for people."""

    OK = 0
    ENDED = 1
    PROTOCOL_ERROR = 2
    UNSUPPORTED_VERSION = 3
    UNKNOWN_INVITATION = 4
    EXPIRED = 5
    REVOKED = 6
    LOCKED = 7
    WRONG_PASSWORD = 8
    DECLINED = 9
    BUSY = 10
    TIMEOUT = 11
    INTERNAL_ERROR = 12


class Permission(IntFlag):
    """What an invitation offers the expert."""

    VIEW = 1
    CONTROL = 2


class Buttons(IntFlag):
    """Mouse buttons held, in `Pointer.buttons`."""

    NONE = 0
    LEFT = 1
    MIDDLE = 2
    RIGHT = 4


@dataclass(frozen=True, kw_only=True, slots=True)
class Hello:
    """First message each way. The viewer names the invitation it holds; the sharer sends b""."""

    version: int = PROTOCOL_VERSION
    role: Role
    name: str
    ticket_id: bytes = b""


@dataclass(frozen=True, kw_only=True, slots=True)
class AuthChallenge:
    nonce: bytes


@dataclass(frozen=True, kw_only=True, slots=True)
class AuthProof:
    """HMAC-SHA256(scrypt(password, salt), nonce ‖ ticket id); see `engine.tickets.proof`."""

    proof: bytes


@dataclass(frozen=True, kw_only=True, slots=True)
class AuthResult:
    """The sharer's verdict on the proof; a refusal ends the connection."""

    code: Reason = Reason.OK
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.code is Reason.OK


@dataclass(frozen=True, kw_only=True, slots=True)
class ConsentPending:
    """The novice is being asked; the code is the one both screens show."""

    session_code: str


@dataclass(frozen=True, kw_only=True, slots=True)
class SessionStart:
    session_code: str
    sharer_name: str
    viewer_name: str
    permissions: Permission


@dataclass(frozen=True, kw_only=True, slots=True)
class Frame:
    """One message of `engine.codec`, opaque here."""

    seq: int
    data: Blob


@dataclass(frozen=True, kw_only=True, slots=True)
class FrameAck:
    """The viewer has decoded frame `seq`: the sharer may send another."""

    seq: int


@dataclass(frozen=True, kw_only=True, slots=True)
class Cursor:
    """Pointer position and, when it changed, its shape (BGRA, width × height; else b"")."""

    x: int
    y: int
    visible: bool
    hot_x: int = 0
    hot_y: int = 0
    width: int = 0
    height: int = 0
    pixels: bytes = b""


@dataclass(frozen=True, kw_only=True, slots=True)
class Chat:
    """A chat line; `time` is seconds since the Unix epoch, UTC."""

    sender: str
    text: str
    time: float


@dataclass(frozen=True, kw_only=True, slots=True)
class ControlRequest:
    """The expert asks to take control."""


@dataclass(frozen=True, kw_only=True, slots=True)
class ControlGrant:
    """The novice accepted: input from the viewer is injected until ControlRevoke."""


@dataclass(frozen=True, kw_only=True, slots=True)
class ControlDeny:
    reason: str = ""


@dataclass(frozen=True, kw_only=True, slots=True)
class ControlPause:
    """The novice is using mouse or keyboard: the expert's input is dropped for `seconds`."""

    seconds: float
    reason: str = ""


@dataclass(frozen=True, kw_only=True, slots=True)
class ControlRevoke:
    """Control ends: the novice took it back, or the expert let go."""

    reason: str = ""


@dataclass(frozen=True, kw_only=True, slots=True)
class Pointer:
    """Pointer position in screen pixels and the buttons held."""

    x: int
    y: int
    buttons: Buttons = Buttons.NONE


@dataclass(frozen=True, kw_only=True, slots=True)
class Key:
    """An X keysym (layout independent), pressed or released."""

    keysym: int
    down: bool


@dataclass(frozen=True, kw_only=True, slots=True)
class Scroll:
    """Wheel clicks; positive dy scrolls down, positive dx right."""

    dx: int
    dy: int


@dataclass(frozen=True, kw_only=True, slots=True)
class RefreshRequest:
    """The viewer wants a keyframe (after a decode error, say)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Ping:
    """The viewer measures the round trip; `token` is its own, echoed untouched in Pong."""

    token: int


@dataclass(frozen=True, kw_only=True, slots=True)
class Pong:
    token: int


@dataclass(frozen=True, kw_only=True, slots=True)
class Error:
    """The sender saw a protocol error and closes."""

    code: Reason = Reason.PROTOCOL_ERROR
    reason: str = ""


@dataclass(frozen=True, kw_only=True, slots=True)
class Bye:
    """The sender closes on purpose: declined, busy, session over."""

    code: Reason = Reason.ENDED
    reason: str = ""


Message = (
    Hello
    | AuthChallenge
    | AuthProof
    | AuthResult
    | ConsentPending
    | SessionStart
    | Frame
    | FrameAck
    | Cursor
    | Chat
    | ControlRequest
    | ControlGrant
    | ControlDeny
    | ControlPause
    | ControlRevoke
    | Pointer
    | Key
    | Scroll
    | RefreshRequest
    | Ping
    | Pong
    | Error
    | Bye
)
