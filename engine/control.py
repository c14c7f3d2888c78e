"""Who drives the novice's desktop: one table of every legal move of control, and the pause.

The states, and the moves between them (the expert is the viewer, the novice the sharer)::

    VIEWING ─expert REQUEST─▶ REQUESTED ─novice ACCEPT─▶ CONTROLLED
    REQUESTED ─novice DECLINE / expert RELEASE─▶ VIEWING
    CONTROLLED ─novice STOP (Esc, Ctrl+C, Stop Control) / expert RELEASE─▶ VIEWING
    any state but ENDED ─either side's END (Bye, Error, disconnect)─▶ ENDED

Both ends keep the same table, as in `engine.protocol.state`; `side` says which end this is.
Control messages cross on the wire (the novice stops while the expert's release is under way),
so the peer's moves that only a crossing explains are legal and change nothing (CROSSINGS);
this side's own moves get no such leeway.

The machine is sans-I/O: it is told what happened and what time it is (`time.monotonic()`
seconds), and says what may happen next. It never injects input itself: the sharer asks
`may_inject(now)` before handing an event to `engine.inject.Injector`.

"Novice wins": while the expert drives, the novice's own mouse or keyboard pauses expert input
for `grace` seconds after the novice's last activity, so the two never fight over the pointer.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from engine.protocol.messages import Permission, Role

__all__ = [
    "CROSSINGS",
    "DEFAULT_GRACE",
    "TRANSITIONS",
    "ControlError",
    "ControlEvent",
    "ControlMachine",
    "ControlRefused",
    "ControlState",
    "Pause",
]

# About the time a person needs to let go of the mouse after the expert's cursor starts moving
# again; short enough that the expert does not think the session froze.
DEFAULT_GRACE = 1.0

EXPERT, NOVICE = Role.VIEWER, Role.SHARER
ROLE_NAMES = {EXPERT: "expert", NOVICE: "novice"}

VIEW_ONLY_REASON = (
    "this invitation is view-only; ask the novice for a new invitation that allows control"
)
PAUSE_REASON = "the novice is using the mouse or keyboard; your input resumes when they stop"


class ControlState(Enum):
    VIEWING = "the expert watches"
    REQUESTED = "the expert asked for control; the novice has not answered"
    CONTROLLED = "the expert drives mouse and keyboard with the novice"
    ENDED = "the session is over"


class ControlEvent(Enum):
    REQUEST = "ask for control"
    ACCEPT = "accept the request"
    DECLINE = "decline the request"
    STOP = "stop control"
    RELEASE = "give control back"
    END = "end the session"


S, E = ControlState, ControlEvent

# (who, state, event) -> next state
TRANSITIONS: dict[tuple[Role, ControlState, ControlEvent], ControlState] = {
    (EXPERT, S.VIEWING, E.REQUEST): S.REQUESTED,
    (NOVICE, S.REQUESTED, E.ACCEPT): S.CONTROLLED,
    (NOVICE, S.REQUESTED, E.DECLINE): S.VIEWING,
    # The expert withdraws the request before the novice answers.
    (EXPERT, S.REQUESTED, E.RELEASE): S.VIEWING,
    (NOVICE, S.CONTROLLED, E.STOP): S.VIEWING,
    (EXPERT, S.CONTROLLED, E.RELEASE): S.VIEWING,
    **{(role, state, E.END): S.ENDED
       for role in (EXPERT, NOVICE) for state in ControlState if state is not S.ENDED},
}

# Moves only a crossing on the wire explains: the other side's message arrives after this side
# went back to VIEWING. Legal only for the peer's moves, never for this side's own.
CROSSINGS: dict[tuple[Role, ControlState, ControlEvent], ControlState] = {
    (EXPERT, S.VIEWING, E.RELEASE): S.VIEWING,  # the release crossed the novice's stop/decline
    (NOVICE, S.VIEWING, E.ACCEPT): S.VIEWING,  # the grant crossed the expert's withdrawal
    (NOVICE, S.VIEWING, E.DECLINE): S.VIEWING,  # the refusal crossed the expert's withdrawal
    (NOVICE, S.VIEWING, E.STOP): S.VIEWING,  # the stop crossed the expert's release
}


class ControlError(Exception):
    """A move the control table does not allow; the message names role, state and event."""


class ControlRefused(ControlError):
    """A request the invitation does not allow; `str()` is the reason to send in ControlDeny."""


@dataclass(frozen=True, slots=True)
class Pause:
    """Expert input stopped because the novice is active; tell the expert `reason`."""

    until: float
    reason: str = PAUSE_REASON


class ControlMachine:
    """The control state of one session, bounded by the invitation's `permissions`, as kept by
    `side` (the sharer, Role.SHARER, keeps it for the novice; the viewer for the expert)."""

    def __init__(self, permissions: Permission, *, grace: float = DEFAULT_GRACE,
                 side: Role = NOVICE) -> None:
        if grace < 0:
            raise ValueError(f"grace must be zero or more seconds, not {grace}")
        self.permissions = permissions
        self.side = side
        self.grace = grace
        self.state = ControlState.VIEWING
        self._paused_until = float("-inf")

    def handle(self, role: Role, event: ControlEvent) -> ControlState:
        """Apply `role`'s `event` and return the new state; an illegal move raises ControlError."""
        if (role, self.state, event) == (EXPERT, S.VIEWING, E.REQUEST) and not (
            self.permissions & Permission.CONTROL
        ):
            raise ControlRefused(VIEW_ONLY_REASON)
        new = TRANSITIONS.get((role, self.state, event))
        if new is None and role is not self.side:
            new = CROSSINGS.get((role, self.state, event))
        if new is None:
            state = self.state
            allowed = sorted({e.name for who, at, e in self._moves() if (who, at) == (role, state)})
            raise ControlError(
                f"the {ROLE_NAMES[role]} may not {event.value} ({event.name}) in state "
                f"{state.name} ({state.value}); allowed: {', '.join(allowed) or 'nothing'}"
            )
        if new is not S.CONTROLLED:
            self._paused_until = float("-inf")
        self.state = new
        return new

    def _moves(self) -> list[tuple[Role, ControlState, ControlEvent]]:
        return [*TRANSITIONS, *(move for move in CROSSINGS if move[0] is not self.side)]

    def novice_active(self, now: float) -> Pause | None:
        """The novice moved the mouse or typed at `now`; a Pause when a new pause starts.

        Each call while controlled extends the pause to `now + grace`; only the call that
        starts one returns it, so the expert is told once per pause, not once per mouse move.
        The caller releases what the expert holds (`Injector.release_all`) when a pause
        starts: an expert's Shift left down would otherwise change what the novice types.
        """
        if self.state is not S.CONTROLLED:
            return None
        starts = now >= self._paused_until
        self._paused_until = max(self._paused_until, now + self.grace)
        return Pause(until=self._paused_until) if starts else None

    def paused(self, now: float) -> bool:
        return self.state is S.CONTROLLED and now < self._paused_until

    def may_inject(self, now: float) -> bool:
        """True when expert input may reach the novice's desktop at `now`."""
        return self.state is S.CONTROLLED and now >= self._paused_until
