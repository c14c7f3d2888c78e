"""What the viewer and novice-panel tests share: Qt on the offscreen platform, one asyncio loop
over Qt's (qasync, as the programs run), and waiting for the dialogs a coroutine opens."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

# Before any QApplication exists: the widgets render the same everywhere, display or not.
os.environ["QT_QPA_PLATFORM"] = "offscreen"

import pytest
import qasync
from PyQt6.QtCore import QEvent, QPoint, QPointF, Qt
from PyQt6.QtGui import QMouseEvent
from PyQt6.QtWidgets import QApplication, QMessageBox, QWidget

T = TypeVar("T")
STEP = 0.02
# A scenario that has not finished by then is stuck: fail it with the await it is stuck at,
# rather than leave Qt's event loop (where no Python signal handler runs) waiting for ever.
SCENARIO_TIMEOUT = 120.0


class CallbackErrors:
    """What went wrong inside the loop's callbacks during one test.

    A callback's exception is only logged by asyncio, and some lose work for good: a task's
    wakeup that runs while another task is mid-step ("Cannot enter into task") is dropped,
    and that task then waits for ever. The loop stops at the first, so the scenario ends at
    once, and the test fails with them.
    """

    def __init__(self) -> None:
        self.messages: list[str] = []

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        self.messages.append(f"{context.get('message')}: {context.get('exception')!r}")
        loop.stop()


@pytest.fixture(scope="session")
def _session_loop(qapp: QApplication) -> Iterator[asyncio.AbstractEventLoop]:
    # One loop for the whole run, closed here: a qasync loop left to the garbage collector
    # closes itself from whichever thread collects it, and its executor shutdown then waits
    # on that very thread.
    event_loop = qasync.QEventLoop(qapp, already_running=False)
    yield event_loop
    event_loop.close()


@pytest.fixture(name="loop")
def qt_loop(_session_loop: asyncio.AbstractEventLoop) -> Iterator[asyncio.AbstractEventLoop]:
    """The asyncio loop on Qt's, as `ra-view` and `ra-share` run it."""
    asyncio.set_event_loop(_session_loop)
    errors = CallbackErrors()
    _session_loop.set_exception_handler(errors)
    try:
        yield _session_loop
    finally:
        leftovers = asyncio.all_tasks(_session_loop)
        for task in leftovers:
            task.cancel()
        if leftovers:
            _session_loop.run_until_complete(asyncio.wait(leftovers, timeout=10))
        _session_loop.set_exception_handler(None)
        asyncio.set_event_loop(None)
    assert not errors.messages, "callbacks failed on the loop:\n" + "\n".join(errors.messages)


def move_mouse(widget: QWidget, pos: QPoint) -> None:
    """The pointer moves over `widget` to `pos`, as from the window system.

    Not `qtbot.mouseMove`: QTest processes events while it moves, a Qt loop inside the
    running coroutine, where qasync would wake other tasks in the middle of this one's step
    and asyncio would drop their wakeups.
    """
    local = QPointF(pos)
    QApplication.sendEvent(widget, QMouseEvent(
        QEvent.Type.MouseMove, local, widget.mapToGlobal(local), Qt.MouseButton.NoButton,
        Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier))


def run_scenario(loop: asyncio.AbstractEventLoop, scenario: Coroutine[Any, Any, T],
                 timeout: float = SCENARIO_TIMEOUT) -> T:
    """Run `scenario` on the Qt loop, for at most `timeout` seconds."""
    return loop.run_until_complete(asyncio.wait_for(scenario, timeout))


async def until(condition: object, timeout: float = 20.0, what: str = "the condition") -> None:
    """Let the loop run until `condition()` is true."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():  # type: ignore[operator]
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout} seconds")
        await asyncio.sleep(STEP)


def visible(name: str) -> QWidget | None:
    """The visible top-level window with this object name, if one is open."""
    for widget in QApplication.topLevelWidgets():
        if widget.objectName() == name and widget.isVisible():
            return widget
    return None


async def dialog(name: str, timeout: float = 20.0) -> QWidget:
    """Wait for the dialog named `name` to open, and return it."""
    await until(lambda: visible(name) is not None, timeout, f"the {name!r} dialog opening")
    found = visible(name)
    assert found is not None
    return found


async def message(timeout: float = 20.0) -> QMessageBox:
    box = await dialog("message", timeout)
    assert isinstance(box, QMessageBox)
    return box
