"""The control table and the novice-wins pause, then control as the sharer wires it, on Xvfb."""

from __future__ import annotations

import queue
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest
from hypothesis import given
from hypothesis import strategies as st
from xclient import Xev, XEvent, keys_down, marker

from engine.control import (
    CROSSINGS,
    DEFAULT_GRACE,
    TRANSITIONS,
    ControlError,
    ControlEvent,
    ControlMachine,
    ControlRefused,
    ControlState,
    Pause,
)
from engine.inject import Injector, LocalInputWatcher, inject_message
from engine.protocol.messages import (
    Buttons,
    Chat,
    ControlDeny,
    ControlGrant,
    ControlRequest,
    ControlRevoke,
    Key,
    Message,
    Permission,
    Pointer,
    Role,
    Scroll,
)
from engine.xvfb import Xvfb

EXPERT, NOVICE = Role.VIEWER, Role.SHARER
S, E = ControlState, ControlEvent
FULL = Permission.VIEW | Permission.CONTROL


def controlled(grace: float = DEFAULT_GRACE) -> ControlMachine:
    machine = ControlMachine(FULL, grace=grace)
    machine.handle(EXPERT, E.REQUEST)
    machine.handle(NOVICE, E.ACCEPT)
    return machine


# --- the table ----------------------------------------------------------------------------------


def test_request_accept_stop_and_again() -> None:
    machine = ControlMachine(FULL)
    assert machine.state is S.VIEWING and not machine.may_inject(0)
    assert machine.handle(EXPERT, E.REQUEST) is S.REQUESTED and not machine.may_inject(0)
    assert machine.handle(NOVICE, E.ACCEPT) is S.CONTROLLED and machine.may_inject(0)
    assert machine.handle(NOVICE, E.STOP) is S.VIEWING and not machine.may_inject(0)
    machine.handle(EXPERT, E.REQUEST)
    assert machine.handle(NOVICE, E.DECLINE) is S.VIEWING
    machine.handle(EXPERT, E.REQUEST)
    machine.handle(NOVICE, E.ACCEPT)
    assert machine.handle(EXPERT, E.RELEASE) is S.VIEWING
    machine.handle(EXPERT, E.REQUEST)
    assert machine.handle(EXPERT, E.RELEASE) is S.VIEWING  # withdrawn before an answer
    assert machine.handle(NOVICE, E.END) is S.ENDED and not machine.may_inject(0)


@pytest.mark.parametrize("state", [S.VIEWING, S.REQUESTED, S.CONTROLLED])
@pytest.mark.parametrize("role", [EXPERT, NOVICE])
def test_either_side_ends_the_session_from_any_state(state: ControlState, role: Role) -> None:
    machine = ControlMachine(FULL)
    machine.state = state
    assert machine.handle(role, E.END) is S.ENDED
    with pytest.raises(ControlError, match="ENDED"):
        machine.handle(EXPERT, E.REQUEST)


def expected(side: Role, role: Role, state: ControlState,
             event: ControlEvent) -> ControlState | None:
    """The table's answer, crossings counted for the peer's moves only."""
    move = (role, state, event)
    return TRANSITIONS.get(move) or (CROSSINGS.get(move) if role is not side else None)


ILLEGAL = [(side, role, state, event) for side in (NOVICE, EXPERT) for role in (EXPERT, NOVICE)
           for state in ControlState for event in ControlEvent
           if expected(side, role, state, event) is None]


@pytest.mark.parametrize(("side", "role", "state", "event"), ILLEGAL)
def test_an_illegal_move_names_role_state_and_event(side: Role, role: Role, state: ControlState,
                                                     event: ControlEvent) -> None:
    machine = ControlMachine(FULL, side=side)
    machine.state = state
    with pytest.raises(ControlError) as raised:
        machine.handle(role, event)
    text = str(raised.value)
    assert text.startswith(f"the {'expert' if role is EXPERT else 'novice'} may not ")
    assert state.name in text and event.name in text
    assert machine.state is state


def test_the_novice_cannot_ask_and_the_expert_cannot_accept() -> None:
    machine = ControlMachine(FULL)
    with pytest.raises(ControlError, match=r"the novice may not ask for control \(REQUEST\)"):
        machine.handle(NOVICE, E.REQUEST)
    machine.handle(EXPERT, E.REQUEST)
    with pytest.raises(ControlError, match=r"allowed: END, RELEASE$"):
        machine.handle(EXPERT, E.ACCEPT)


def test_view_only_invitation_refuses_with_a_reason() -> None:
    machine = ControlMachine(Permission.VIEW)
    with pytest.raises(ControlRefused, match="view-only; ask the novice for a new invitation"):
        machine.handle(EXPERT, E.REQUEST)
    assert machine.state is S.VIEWING
    with pytest.raises(ControlError):
        machine.handle(NOVICE, E.ACCEPT)  # nothing to accept: the request never happened


def test_crossed_messages_are_legal_for_the_peer_only() -> None:
    sharer = controlled()
    sharer.handle(NOVICE, E.STOP)
    assert sharer.handle(EXPERT, E.RELEASE) is S.VIEWING  # the expert let go at the same time
    with pytest.raises(ControlError, match="the novice may not accept"):
        sharer.handle(NOVICE, E.ACCEPT)  # the novice's own answer to no request is a bug
    viewer = ControlMachine(FULL, side=EXPERT)
    viewer.handle(EXPERT, E.REQUEST)
    viewer.handle(EXPERT, E.RELEASE)  # withdrawn, while the novice was accepting
    assert viewer.handle(NOVICE, E.ACCEPT) is S.VIEWING
    assert viewer.handle(NOVICE, E.STOP) is S.VIEWING
    with pytest.raises(ControlError, match="the expert may not give control back"):
        ControlMachine(FULL, side=EXPERT).handle(EXPERT, E.RELEASE)


@given(st.sampled_from([EXPERT, NOVICE]),
       st.lists(st.tuples(st.sampled_from([EXPERT, NOVICE]), st.sampled_from(list(E)))))
def test_any_sequence_follows_the_table(side: Role,
                                        moves: list[tuple[Role, ControlEvent]]) -> None:
    machine = ControlMachine(FULL, side=side)
    for role, event in moves:
        new = expected(side, role, machine.state, event)
        before = machine.state
        if new is None:
            with pytest.raises(ControlError):
                machine.handle(role, event)
            assert machine.state is before
        else:
            assert machine.handle(role, event) is new
        assert machine.may_inject(0) == (machine.state is S.CONTROLLED)


# --- the pause ----------------------------------------------------------------------------------


def test_novice_activity_pauses_the_expert_for_the_grace_period() -> None:
    machine = controlled(grace=1.5)
    assert machine.may_inject(10.0)
    pause = machine.novice_active(10.0)
    assert pause == Pause(until=11.5) and "novice is using the mouse" in pause.reason
    assert not machine.may_inject(10.0) and machine.paused(11.4)
    assert machine.novice_active(11.0) is None  # the same pause, longer: the expert knows
    assert not machine.may_inject(12.0) and machine.may_inject(12.5)
    assert machine.novice_active(20.0) == Pause(until=21.5)  # a new pause: tell them again


def test_no_pause_outside_control_and_none_left_after_it() -> None:
    machine = ControlMachine(FULL)
    assert machine.novice_active(1.0) is None
    machine.handle(EXPERT, E.REQUEST)
    assert machine.novice_active(1.0) is None
    machine.handle(NOVICE, E.ACCEPT)
    assert machine.novice_active(2.0) is not None
    machine.handle(EXPERT, E.RELEASE)
    machine.handle(EXPERT, E.REQUEST)
    machine.handle(NOVICE, E.ACCEPT)
    assert machine.may_inject(2.0)  # the old pause went with the old control


def test_grace_is_configurable_and_never_negative() -> None:
    assert controlled(grace=0).novice_active(5.0) == Pause(until=5.0)
    with pytest.raises(ValueError, match="grace must be zero or more"):
        ControlMachine(FULL, grace=-1)


# --- control as the sharer wires it, on a real display ------------------------------------------


@dataclass
class Clock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Desk:
    """The sharer's side of control: the machine decides, the injector acts, the watcher's
    callbacks hop to this (the loop's) thread through a queue, as call_soon_threadsafe would."""

    machine: ControlMachine
    injector: Injector
    clock: Clock
    sent: list[Message] = field(default_factory=list)  # what the expert was told
    hops: queue.Queue[Callable[[], None]] = field(default_factory=queue.Queue)

    def from_expert(self, message: Message) -> None:
        if isinstance(message, ControlRequest):
            try:
                self.machine.handle(EXPERT, E.REQUEST)
            except ControlRefused as refused:
                self.sent.append(ControlDeny(reason=str(refused)))
        elif isinstance(message, ControlRevoke):
            self._leave(EXPERT, E.RELEASE)
        elif isinstance(message, Pointer | Key | Scroll) and self.machine.may_inject(self.clock()):
            inject_message(self.injector, message)

    def novice_answers(self, accept: bool) -> None:
        if accept:
            if self.machine.handle(NOVICE, E.ACCEPT) is S.CONTROLLED:
                self.injector.gate.open()
                self.sent.append(ControlGrant())
        else:
            self.machine.handle(NOVICE, E.DECLINE)
            self.sent.append(ControlDeny(reason="the novice declined"))

    def _leave(self, role: Role, event: ControlEvent, reason: str = "") -> None:
        self.injector.gate.close()
        self.machine.handle(role, event)
        self.injector.release_all()
        if role is NOVICE:
            self.sent.append(ControlRevoke(reason=reason))

    # The watcher's callbacks (its thread) and their halves on the loop's thread.
    def on_stop(self, reason: str) -> None:
        self.hops.put(lambda: self._novice_stops(reason))

    def _novice_stops(self, reason: str) -> None:
        # The expert's release may have been handled while this hop waited.
        if self.machine.state is S.CONTROLLED:
            self._leave(NOVICE, E.STOP, reason)

    def on_activity(self) -> None:
        self.hops.put(self._novice_active)

    def _novice_active(self) -> None:
        pause = self.machine.novice_active(self.clock())
        if pause is not None:
            self.injector.release_all()
            # Until the protocol has a pause message, the notice goes out as a chat line.
            self.sent.append(Chat(sender="remote-assist", text=pause.reason, time=0.0))

    def run_hop(self) -> None:
        self.hops.get(timeout=10)()


@pytest.fixture
def desk(xvfb: Xvfb) -> Iterator[tuple[Desk, Xev]]:
    # Keys the expert holds must not autorepeat into xev's record while the test looks.
    subprocess.run(["xset", "r", "off"], env=xvfb.environ(), check=True)
    with Xev(xvfb) as xev, Injector(xvfb.display) as injector:
        clock = Clock()
        # A long grace: the test moves the clock itself, so nothing depends on real timing.
        made = Desk(ControlMachine(FULL, grace=30.0), injector, clock)
        with LocalInputWatcher(xvfb.display, injector, made.on_stop, made.on_activity):
            yield made, xev


def expert_input(desk: Desk) -> None:
    desk.from_expert(Pointer(x=321, y=123, buttons=Buttons.LEFT))
    desk.from_expert(Pointer(x=321, y=123))
    desk.from_expert(Key(keysym=ord("k"), down=True))
    desk.from_expert(Key(keysym=ord("k"), down=False))
    desk.from_expert(Scroll(dx=0, dy=1))


def expert_events(events: list[XEvent]) -> list[tuple[str, int]]:
    return [(e.kind, e.button or e.keysym) for e in events if e.kind != "MotionNotify"]


EXPERT_EVENTS = [("ButtonPress", 1), ("ButtonRelease", 1), ("KeyPress", ord("k")),
                 ("KeyRelease", ord("k")), ("ButtonPress", 5), ("ButtonRelease", 5)]


def test_input_arrives_only_after_the_novice_accepts(desk: tuple[Desk, Xev]) -> None:
    d, xev = desk
    expert_input(d)  # no request yet
    d.from_expert(ControlRequest())
    expert_input(d)  # asked, not answered
    d.novice_answers(accept=True)
    expert_input(d)
    assert expert_events(marker(d.injector, xev)) == EXPERT_EVENTS
    assert d.sent == [ControlGrant()]


def test_declined_request_injects_nothing(desk: tuple[Desk, Xev]) -> None:
    d, xev = desk
    d.from_expert(ControlRequest())
    d.novice_answers(accept=False)
    expert_input(d)
    assert marker(d.injector, xev) == []
    assert d.sent == [ControlDeny(reason="the novice declined")]


def test_view_only_invitation_injects_nothing(xvfb: Xvfb) -> None:
    with Xev(xvfb) as xev, Injector(xvfb.display) as injector:
        d = Desk(ControlMachine(Permission.VIEW), injector, Clock())
        d.from_expert(ControlRequest())
        expert_input(d)
        assert marker(injector, xev) == []
        (deny,) = d.sent
        assert isinstance(deny, ControlDeny) and "view-only" in deny.reason


def test_novice_mouse_pauses_the_expert_who_is_told(desk: tuple[Desk, Xev]) -> None:
    d, xev = desk
    d.from_expert(ControlRequest())
    d.novice_answers(accept=True)
    d.from_expert(Key(keysym=ord("h"), down=True))  # held when the novice grabs the mouse
    subprocess.run(["xdotool", "mousemove", "600", "400"], env=xev.environ(), check=True)
    d.run_hop()
    assert d.machine.paused(d.clock())
    notice = d.sent[-1]
    assert isinstance(notice, Chat) and notice.text.startswith("the novice is using the mouse")
    expert_input(d)  # dropped: the novice wins
    d.clock.now += 31.0
    d.from_expert(Pointer(x=10, y=20))  # the grace is over
    events = marker(d.injector, xev)
    assert [(e.kind, e.keysym, e.x, e.y) for e in events] == [
        ("KeyPress", ord("h"), 640, 512), ("MotionNotify", 0, 600, 400),
        ("KeyRelease", ord("h"), 600, 400), ("MotionNotify", 0, 10, 20)]


def test_novice_esc_stops_control_and_releases_what_the_expert_holds(
        desk: tuple[Desk, Xev], xvfb: Xvfb) -> None:
    d, xev = desk
    d.from_expert(ControlRequest())
    d.novice_answers(accept=True)
    d.from_expert(Pointer(x=200, y=200, buttons=Buttons.LEFT | Buttons.RIGHT))
    d.from_expert(Key(keysym=0xFFE1, down=True))  # Shift_L
    d.from_expert(Key(keysym=ord("Q"), down=True))
    d.from_expert(Key(keysym=0xFF1B, down=True))  # the expert's own Esc: control goes on
    d.from_expert(Key(keysym=0xFF1B, down=False))
    assert d.hops.empty() and d.machine.state is S.CONTROLLED
    subprocess.run(["xdotool", "key", "Escape"], env=xev.environ(), check=True)
    d.run_hop()
    assert d.machine.state is S.VIEWING and d.sent[-1] == ControlRevoke(
        reason="the novice pressed Esc")
    expert_input(d)  # after the stop: nothing
    events = marker(d.injector, xev)
    assert keys_down(xvfb) == []
    escape = next(i for i, e in enumerate(events) if e.kind == "KeyRelease" and e.keycode == 9
                  and i > 0 and events[i - 1].kind == "KeyPress" and events[i - 1].keycode == 9
                  and not any(x.keycode == 9 for x in events[i + 1:]))
    let_go = {(e.kind, e.button or e.keycode) for e in events[escape + 1:]}
    assert let_go == {("KeyRelease", 50), ("KeyRelease", 24),  # Shift_L, Q
                      ("ButtonRelease", 1), ("ButtonRelease", 3)}
