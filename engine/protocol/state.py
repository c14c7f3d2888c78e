"""The connection's state machine: one table of every legal move.

Both ends keep the same state, because the handshake strictly alternates (the viewer speaks
first, then each side waits for the other)::

    HELLO ─viewer Hello─▶ SHARER_HELLO ─sharer Hello─▶ CHALLENGE ─sharer AuthChallenge─▶ PROOF
    PROOF ─viewer AuthProof─▶ VERDICT ─sharer AuthResult─▶ CONSENT (a refusal: CLOSED)
    CONSENT ─sharer ConsentPending─▶ CONSENT ─sharer SessionStart─▶ SESSION
    any state but CLOSED ─either side's Bye or Error─▶ CLOSED

Nothing the session carries (frames, chat, input) is legal before SESSION, so no pixel or
keystroke can cross before authentication and consent. Who holds control inside the session
is not this table's business: `engine.control` keeps that.
"""

from __future__ import annotations

from enum import Enum
from typing import Any

from engine.protocol import messages as m
from engine.protocol.errors import ProtocolError
from engine.protocol.messages import Message, Role

__all__ = ["TRANSITIONS", "State", "next_state"]


class State(Enum):
    HELLO = "waiting for the viewer's hello"
    SHARER_HELLO = "waiting for the sharer's hello"
    CHALLENGE = "waiting for the sharer's challenge"
    PROOF = "waiting for the viewer's proof"
    VERDICT = "waiting for the sharer's verdict"
    CONSENT = "waiting for the novice's consent"
    SESSION = "in session"
    CLOSED = "closed"


SHARER_SESSION_MESSAGES: tuple[type[Any], ...] = (
    m.Frame, m.Cursor, m.Chat, m.ControlGrant, m.ControlDeny, m.ControlPause, m.ControlRevoke,
    m.Pong,
)
VIEWER_SESSION_MESSAGES: tuple[type[Any], ...] = (
    m.FrameAck, m.Chat, m.ControlRequest, m.ControlRevoke, m.Pointer, m.Key, m.Scroll,
    m.RefreshRequest, m.Ping,
)

SHARER, VIEWER = Role.SHARER, Role.VIEWER

# (sender, state, message type) -> next state
TRANSITIONS: dict[tuple[Role, State, type[Any]], State] = {
    (VIEWER, State.HELLO, m.Hello): State.SHARER_HELLO,
    (SHARER, State.SHARER_HELLO, m.Hello): State.CHALLENGE,
    (SHARER, State.CHALLENGE, m.AuthChallenge): State.PROOF,
    (VIEWER, State.PROOF, m.AuthProof): State.VERDICT,
    (SHARER, State.VERDICT, m.AuthResult): State.CONSENT,
    (SHARER, State.CONSENT, m.ConsentPending): State.CONSENT,
    (SHARER, State.CONSENT, m.SessionStart): State.SESSION,
    **{(SHARER, State.SESSION, t): State.SESSION for t in SHARER_SESSION_MESSAGES},
    **{(VIEWER, State.SESSION, t): State.SESSION for t in VIEWER_SESSION_MESSAGES},
    **{(role, state, t): State.CLOSED
       for role in Role for state in State if state is not State.CLOSED
       for t in (m.Bye, m.Error)},
}


def next_state(
    sender: Role, state: State, message: Message, error: type[ProtocolError]
) -> State:
    """The state after `sender` sends `message` in `state`; an illegal move raises `error`."""
    new = TRANSITIONS.get((sender, state, type(message)))
    if new is None:
        allowed = sorted({t.__name__ for who, at, t in TRANSITIONS if (who, at) == (sender, state)})
        raise error(
            f"the {sender.name.lower()} may not send {type(message).__name__} in state "
            f"{state.name} ({state.value}); allowed: {', '.join(allowed) or 'nothing'}"
        )
    if isinstance(message, m.AuthResult) and not message.ok:
        # A refused proof ends the connection, exactly as a Bye would.
        return State.CLOSED
    return new
