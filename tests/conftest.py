"""Fixtures shared by the tests: private X displays, state directories, clocks, SMTP."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from helpers import FakeClock, Mailbox, free_port

from engine.identity import Identity
from engine.invitations import InvitationStore
from engine.xvfb import Xvfb


@pytest.fixture
def xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """State and config directories inside tmp_path, so nothing touches the real home."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    return tmp_path


@pytest.fixture
def identity(xdg: Path) -> Identity:
    """This user's key and certificate, made fresh under `xdg`."""
    return Identity.load_or_create()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(xdg: Path, clock: FakeClock) -> Iterator[InvitationStore]:
    """The invitation store under `xdg`, on a clock the test moves."""
    with InvitationStore(clock=clock) as opened:
        yield opened


@pytest.fixture
def smtp_server() -> Iterator[tuple[Controller, Mailbox]]:
    """A plain aiosmtpd server on 127.0.0.1."""
    mailbox = Mailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield controller, mailbox
    finally:
        controller.stop()


@pytest.fixture
def xvfb(monkeypatch: pytest.MonkeyPatch) -> Iterator[Xvfb]:
    """A private Xvfb (1024x768, room to grow to 1280x1024); DISPLAY points at it."""
    with Xvfb(1024, 768, max_size=(1280, 1024)) as server:
        monkeypatch.setenv("DISPLAY", server.display)
        yield server
