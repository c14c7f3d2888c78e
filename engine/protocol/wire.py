"""Messages as bytes.

Every message travels as one frame (integers little-endian)::

    u32   length    bytes that follow: the type byte and the body, 1 .. the size cap
    u8    type      MessageType
    body            the message's fields, in the order the dataclass declares them:
                    first its fixed-size fields (ints, bools, floats, enums) packed with the
                    struct format given in LAYOUTS, then each str / bytes field as
                    u32 length + bytes (str as UTF-8)

Nothing else: no padding, no trailing bytes, bools are 0 or 1, enums one of their values,
floats finite. A Frame is therefore 4 + 1 + 4 + 4 = 13 bytes of overhead around the codec's
message, a FrameAck 9 bytes and a Pointer 14: the hot messages cost one `struct` call each.

Decoding trusts nothing: a short body, a length past the end, bad UTF-8, an unknown type or
enum value raise RemoteProtocolError; encoding a value that does not fit raises
LocalProtocolError.
"""

from __future__ import annotations

import math
import struct
import typing
from dataclasses import dataclass, fields
from enum import IntEnum, IntFlag
from typing import Any

from engine.protocol import messages as m
from engine.protocol.errors import LocalProtocolError, RemoteProtocolError
from engine.protocol.messages import Message, MessageType

__all__ = [
    "HEADER",
    "LARGE_VALUE",
    "LAYOUTS",
    "MAX_FRAME_SIZE",
    "MAX_HANDSHAKE_MESSAGE_SIZE",
    "MAX_MESSAGE_SIZE",
    "decode_body",
    "encode",
    "encode_parts",
]

HEADER = struct.Struct("<IB")
LENGTH = struct.Struct("<I")

# A frame carries at most a whole screen of pixels that do not compress, 3 bytes each
# (engine.frame_format drops the padding byte), for the largest screen the decoder takes,
# 8192 × 8192 (192 MiB), and its tile tables: two 4K monitors side by side are 50 MB, a 5K
# screen 44 MB. Only the viewer receives frames, and only once the session has started.
MAX_FRAME_SIZE = 256 * 1024 * 1024
# Every other message is small (input, chat, acks, a cursor): this bounds what a hostile
# length can make either side buffer.
MAX_MESSAGE_SIZE = 32 * 1024 * 1024
# Before the session starts the peer is not authenticated yet: nothing it may send then
# (hello, proof) comes near this, and it bounds what a stranger can make us buffer.
MAX_HANDSHAKE_MESSAGE_SIZE = 64 * 1024
# From this size on, a bytes value travels apart from its header: it is written to the
# transport as it is, and a `Blob` field is received as a view of its message's own buffer.
# Either way a frame's pixels (6 MB a full 1080p screen) are not copied once more.
LARGE_VALUE = 64 * 1024

# Message class -> (wire type, struct format of its fixed-size fields in declaration order).
_FORMATS: dict[type[Any], tuple[MessageType, str]] = {
    m.Hello: (MessageType.HELLO, "HB"),  # version, role
    m.AuthChallenge: (MessageType.AUTH_CHALLENGE, ""),
    m.AuthProof: (MessageType.AUTH_PROOF, ""),
    m.AuthResult: (MessageType.AUTH_RESULT, "B"),  # code
    m.ConsentPending: (MessageType.CONSENT_PENDING, ""),
    m.SessionStart: (MessageType.SESSION_START, "B"),  # permissions
    m.Frame: (MessageType.FRAME, "I"),  # seq
    m.FrameAck: (MessageType.FRAME_ACK, "I"),  # seq
    m.Cursor: (MessageType.CURSOR, "iiBHHHH"),  # x, y, visible, hot_x, hot_y, width, height
    m.Chat: (MessageType.CHAT, "d"),  # time
    m.ControlRequest: (MessageType.CONTROL_REQUEST, ""),
    m.ControlGrant: (MessageType.CONTROL_GRANT, ""),
    m.ControlDeny: (MessageType.CONTROL_DENY, ""),
    m.ControlPause: (MessageType.CONTROL_PAUSE, "d"),  # seconds
    m.ControlRevoke: (MessageType.CONTROL_REVOKE, ""),
    m.Pointer: (MessageType.POINTER, "iiB"),  # x, y, buttons
    m.Key: (MessageType.KEY, "IB"),  # keysym, down
    m.Scroll: (MessageType.SCROLL, "hh"),  # dx, dy
    m.RefreshRequest: (MessageType.REFRESH_REQUEST, ""),
    m.Ping: (MessageType.PING, "Q"),  # token
    m.Pong: (MessageType.PONG, "Q"),  # token
    m.Error: (MessageType.ERROR, "B"),  # code
    m.Bye: (MessageType.BYE, "B"),  # code
}


# The field types that travel as u32 length + bytes, after the fixed-size fields.
_VARIABLE = (str, bytes, m.Blob)


@dataclass(frozen=True, slots=True)
class Layout:
    wire_type: MessageType
    cls: type[Any]
    fixed: struct.Struct
    fixed_fields: tuple[tuple[str, type], ...]
    # (name, type: str, bytes or Blob) of the variable fields, after the fixed part
    variable_fields: tuple[tuple[str, Any], ...]


def _layout(cls: type[Any], wire_type: MessageType, fmt: str) -> Layout:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in fields(cls)]
    fixed = tuple((n, hints[n]) for n in names if hints[n] not in _VARIABLE)
    variable = tuple((n, hints[n]) for n in names if hints[n] in _VARIABLE)
    packer = struct.Struct("<" + fmt)
    if len(fmt) != len(fixed):
        raise TypeError(f"{cls.__name__}: format {fmt!r} does not match fields {fixed}")
    return Layout(wire_type, cls, packer, fixed, variable)


LAYOUTS: dict[type[Any], Layout] = {cls: _layout(cls, *spec) for cls, spec in _FORMATS.items()}
_BY_TYPE: dict[int, Layout] = {layout.wire_type: layout for layout in LAYOUTS.values()}


def _check(kind: type, value: Any) -> Any:
    """`value` as a field of type `kind`, or ValueError."""
    if kind is bool:
        if value not in (0, 1) or isinstance(value, float):
            raise ValueError(f"{value!r} is not a boolean")
        return bool(value)
    if kind is float:
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"{value!r} is not a finite number")
        return float(value)
    if isinstance(kind, type) and issubclass(kind, IntFlag):
        every = sum(member.value for member in kind)
        if not isinstance(value, int) or value & ~every:
            raise ValueError(f"{value!r} has bits outside {kind.__name__}")
        return kind(value)
    if isinstance(kind, type) and issubclass(kind, IntEnum):
        return kind(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{value!r} is not an integer")
    return value


def encode(message: Message) -> bytes:
    """The whole frame for `message`: header, fixed fields, variable fields."""
    return b"".join(encode_parts(message))


def encode_parts(message: Message) -> list[bytes | memoryview]:
    """The frame for `message` in pieces to write one after the other: a value of
    `LARGE_VALUE` bytes or more (a frame's pixels) stands alone, not copied into one buffer
    with the rest; everything else is joined, since each write through TLS makes a record of
    its own."""
    layout = LAYOUTS.get(type(message))
    if layout is None:
        raise LocalProtocolError(f"{message!r} is not a protocol message")
    name = type(message).__name__
    try:
        values = [_check(kind, getattr(message, field)) for field, kind in layout.fixed_fields]
        parts = [b"", layout.fixed.pack(*values)]
        for field, kind in layout.variable_fields:
            value = getattr(message, field)
            if kind is str and isinstance(value, str):
                value = value.encode()
            elif kind is m.Blob and isinstance(value, memoryview):
                value = value.cast("B")  # its length in bytes, whatever it views
            elif kind is str or not isinstance(value, bytes):
                raise ValueError(f"{field} must be {'str' if kind is str else 'bytes'}")
            parts += (LENGTH.pack(len(value)), value)
    except (ValueError, struct.error, OverflowError) as exc:
        raise LocalProtocolError(f"cannot encode {name}: {exc}") from None
    size = 1 + sum(map(len, parts))
    cap = MAX_FRAME_SIZE if isinstance(message, m.Frame) else MAX_MESSAGE_SIZE
    if size > cap:
        raise LocalProtocolError(f"{name} is {size} bytes, over the cap of {cap}")
    parts[0] = HEADER.pack(size, layout.wire_type)
    pieces: list[bytes | memoryview] = []
    start = 0  # the first part not yet in `pieces`
    for n, part in enumerate(parts):
        if len(part) >= LARGE_VALUE:
            if n > start:
                pieces.append(b"".join(parts[start:n]))
            pieces.append(part)
            start = n + 1
    if start < len(parts):
        pieces.append(b"".join(parts[start:]))
    return pieces


def decode_body(wire_type: int, body: memoryview, *, owned: bool = False) -> Message:
    """The message of type `wire_type` whose body is exactly `body`. When the buffer under
    `body` belongs to this message alone (`owned`), a `Blob` field of `LARGE_VALUE` bytes or
    more is a read-only view of it, not a copy."""
    layout = _BY_TYPE.get(wire_type)
    if layout is None:
        raise RemoteProtocolError(f"unknown message type 0x{wire_type:02x}")
    name = layout.cls.__name__
    if len(body) < layout.fixed.size:
        raise RemoteProtocolError(f"{name} body is {len(body)} bytes, too short")
    try:
        raw = layout.fixed.unpack_from(body)
        kwargs = {field: _check(kind, value)
                  for (field, kind), value in zip(layout.fixed_fields, raw, strict=True)}
        offset = layout.fixed.size
        for field, kind in layout.variable_fields:
            if offset + LENGTH.size > len(body):
                raise ValueError(f"{field} is cut off")
            (length,) = LENGTH.unpack_from(body, offset)
            offset += LENGTH.size
            if offset + length > len(body):
                raise ValueError(f"{field} claims {length} bytes past the end")
            chunk = body[offset:offset + length]
            offset += length
            if kind is str:
                kwargs[field] = str(chunk, "utf-8")
            elif kind is m.Blob and owned and length >= LARGE_VALUE:
                kwargs[field] = chunk.toreadonly()
            else:
                kwargs[field] = bytes(chunk)
        if offset != len(body):
            raise ValueError(f"{len(body) - offset} bytes after the last field")
    except ValueError as exc:  # UnicodeDecodeError is a ValueError
        raise RemoteProtocolError(f"malformed {name}: {exc}") from None
    message: Message = layout.cls(**kwargs)
    return message
