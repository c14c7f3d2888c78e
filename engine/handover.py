"""Control of one session, on the novice's side: the table decides, the injector acts.

`Handover` joins `engine.control` (who may drive), `engine.inject` (XTEST input, the gate, the
watcher of the novice's own keys) and the session (`post`, which sends in order without
waiting). Every method runs on the event loop's thread; the watcher's callbacks hop there with
`call_soon_threadsafe`, but the watcher closes the injector's gate itself first, so the novice's
Esc or Ctrl+C wins over expert input already queued on the loop.

The novice is asked through `HandoverListener.control_requested` without holding up the
session: frames, acks and chat go on while the question is open.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from engine.channel import SessionError
from engine.control import ControlError, ControlEvent, ControlMachine, ControlRefused, ControlState
from engine.inject import InjectError, Injector, LocalInputWatcher, inject_message
from engine.protocol import (
    ControlDeny,
    ControlGrant,
    ControlPause,
    ControlRevoke,
    Key,
    Message,
    Permission,
    Pointer,
    Reason,
    Role,
    Scroll,
)

__all__ = ["Handover", "HandoverListener"]

log = logging.getLogger(__name__)

EXPERT, NOVICE = Role.VIEWER, Role.SHARER


class HandoverListener:
    """What the novice's front end is asked and told about control (see `SharerEvents`)."""

    async def control_requested(self, viewer_name: str) -> bool:
        return False

    def control(self, controlled: bool, reason: str) -> None:
        """The expert took control (True) or no longer has it (False), and why."""


class Handover:
    """Who drives the novice's display during one session, and the input that follows."""

    def __init__(self, *, permissions: Permission, viewer_name: str, sharer_name: str,
                 display: str | None, post: Callable[[Message], None],
                 listener: HandoverListener, grace: float | None = None) -> None:
        self.machine = (ControlMachine(permissions) if grace is None
                        else ControlMachine(permissions, grace=grace))
        self.viewer_name = viewer_name
        self.sharer_name = sharer_name
        self.display = display
        self._post = post
        self._listener = listener
        self._injector: Injector | None = None
        self._watcher: LocalInputWatcher | None = None
        self._question: asyncio.Task[None] | None = None

    @property
    def state(self) -> ControlState:
        return self.machine.state

    # --- from the expert ------------------------------------------------------------------

    def expert_requests(self) -> None:
        try:
            self.machine.handle(EXPERT, ControlEvent.REQUEST)
        except ControlRefused as refused:
            self._post(ControlDeny(reason=str(refused)))
            return
        except ControlError as exc:
            raise _protocol_error(exc) from None
        if self.display is None:
            self._decline(f"{self.sharer_name} shares a screen that cannot take input")
            return
        self._question = asyncio.ensure_future(self._ask())

    async def _ask(self) -> None:
        try:
            accepted = await self._listener.control_requested(self.viewer_name)
        except Exception:
            log.exception("asking the novice about control failed")
            accepted = False
        if self.machine.state is not ControlState.REQUESTED:
            return  # the expert withdrew, or the session ended, while the novice decided
        if accepted:
            self._grant()
        else:
            self._decline(f"{self.sharer_name} declined to give control")

    def expert_releases(self) -> None:
        was = self.machine.state
        self._leave(EXPERT, ControlEvent.RELEASE)
        if was is ControlState.CONTROLLED:
            self._listener.control(False, f"{self.viewer_name} gave control back")

    def expert_input(self, message: Pointer | Key | Scroll) -> None:
        """Inject if control is held and the novice is not using the desktop; else drop it."""
        if self._injector is None or not self.machine.may_inject(time.monotonic()):
            return
        try:
            inject_message(self._injector, message)
        except InjectError as exc:
            self.novice_stops(f"input cannot reach {self.sharer_name}'s screen any more ({exc})")

    # --- from the novice ------------------------------------------------------------------

    def novice_stops(self, reason: str) -> None:
        """Stop Control, Esc or Ctrl+C: control ends now, the session goes on view-only."""
        if self.machine.state is not ControlState.CONTROLLED:
            return  # the expert's release may have come first
        self._leave(NOVICE, ControlEvent.STOP)
        self._post(ControlRevoke(reason=reason))
        self._listener.control(False, reason)

    def _novice_active(self) -> None:
        pause = self.machine.novice_active(time.monotonic())
        if pause is not None and self._injector is not None:
            self._injector.release_all()
            self._post(ControlPause(seconds=self.machine.grace, reason=pause.reason))

    # --- the moves ------------------------------------------------------------------------

    def _grant(self) -> None:
        loop = asyncio.get_running_loop()

        # On the watcher's thread: hop to the loop's.
        def on_stop(reason: str) -> None:
            loop.call_soon_threadsafe(self.novice_stops, reason)

        def on_activity() -> None:
            loop.call_soon_threadsafe(self._novice_active)

        try:
            if self._injector is None:
                self._injector = Injector(self.display)
            self._watcher = LocalInputWatcher(self.display, self._injector, on_stop=on_stop,
                                              on_activity=on_activity)
            self.machine.handle(NOVICE, ControlEvent.ACCEPT)
            self._injector.gate.open()
            self._watcher.start()
        except InjectError as exc:
            self._stop_watching()
            if self.machine.state is ControlState.CONTROLLED:
                self._leave(NOVICE, ControlEvent.STOP)
                self._post(ControlRevoke(reason=str(exc)))
            else:
                self._decline(str(exc))
            return
        self._post(ControlGrant())
        self._listener.control(True, f"{self.viewer_name} is in control; Esc, Ctrl+C or "
                                     "Stop Control takes it back")

    def _decline(self, reason: str) -> None:
        self.machine.handle(NOVICE, ControlEvent.DECLINE)
        self._post(ControlDeny(reason=reason))

    def _leave(self, role: Role, event: ControlEvent) -> None:
        """Close the gate first, then let go of whatever the expert holds down."""
        if self._injector is not None:
            self._injector.gate.close()
        try:
            self.machine.handle(role, event)
        except ControlError as exc:
            raise _protocol_error(exc) from None
        finally:
            self._stop_watching()
            if self._injector is not None:
                self._injector.release_all()

    def _stop_watching(self) -> None:
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.stop()

    def end(self) -> None:
        """The session is over: nothing more is injected, nothing stays held."""
        if self._question is not None:
            self._question.cancel()
        was = self.machine.state
        if self._injector is not None:
            self._injector.gate.close()
        if was is not ControlState.ENDED:
            self.machine.handle(NOVICE, ControlEvent.END)
        self._stop_watching()
        if self._injector is not None:
            try:
                self._injector.release_all()
                self._injector.close()
            except InjectError:
                log.info("the display went away before control was cleaned up")
            self._injector = None
        if was is ControlState.CONTROLLED:
            self._listener.control(False, "the session ended")


def _protocol_error(exc: ControlError) -> SessionError:
    return SessionError(f"the viewer broke the control protocol: {exc}", Reason.PROTOCOL_ERROR)
