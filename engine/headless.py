"""`ra-view TICKET --headless`: the expert's side without a window.

    ra-view TICKET --headless [--password-file PATH] [--name NAME] [--snapshot OUT.png]
                              [--seconds N]

It joins the session an invitation offers, decodes the desktop into memory, prints the novice's
chat lines and a line of figures every second. `--snapshot` waits for the first complete frame,
writes it as PNG and leaves; `--seconds` leaves after that long. Every refusal exits with
status 1 and the reason on stderr; a wrong call with status 2.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from collections.abc import Coroutine
from datetime import datetime
from pathlib import Path
from typing import Any

from PIL import Image

from engine.channel import SessionError
from engine.client import Client, Viewer, ViewerEvents
from engine.frame_format import Frame
from engine.protocol import Chat, ConsentPending, Reason
from engine.tickets import Ticket, TicketError

__all__ = ["add_arguments", "main", "save_png"]

STATS_INTERVAL = 1.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--password-file", metavar="PATH",
                        help="read the invitation's password from the first line of PATH")
    parser.add_argument("--name", default=getpass.getuser(),
                        help="your name as the novice will see it")
    parser.add_argument("--snapshot", type=Path, metavar="OUT.png",
                        help="with --headless: save the first complete screen and leave")
    parser.add_argument("--seconds", type=float, metavar="N",
                        help="with --headless: leave after N seconds")


def save_png(framebuffer: Frame, path: Path) -> None:
    """The BGRX framebuffer as an RGB PNG."""
    height, width = framebuffer.shape[:2]
    Image.frombuffer("RGB", (width, height), framebuffer.tobytes(), "raw", "BGRX", 0,
                     1).save(path)


def read_password(ticket: Ticket, path: str | None) -> str | None:
    if not ticket.password:
        return None
    if path:
        try:
            with open(path, encoding="utf-8") as file:
                return file.readline().rstrip("\r\n")
        except OSError as exc:
            raise SessionError(f"cannot read the password file {path}: "
                               f"{exc.strerror or exc}") from None
    if not sys.stdin.isatty():
        raise SessionError("this invitation needs a password: give it with --password-file "
                           "PATH or run ra-view at a terminal")
    return getpass.getpass(f"Password for {ticket.name}'s invitation: ")


class _Printer(ViewerEvents):
    def __init__(self) -> None:
        self.complete = asyncio.Event()

    def resized(self, width: int, height: int) -> None:
        print(f"Screen: {width}x{height}", flush=True)
        # A keyframe: the framebuffer holds a whole screen now.
        self.complete.set()

    def chat(self, message: Chat) -> None:
        print(f"[{datetime.fromtimestamp(message.time):%H:%M}] {message.sender}: "
              f"{message.text}", flush=True)

    def control(self, granted: bool, reason: str) -> None:
        print(("Control: " if granted else "No control: ") + reason, flush=True)


async def run(args: argparse.Namespace) -> int:
    ticket = Ticket.load(args.ticket)
    password = read_password(ticket, args.password_file)

    def pending(message: ConsentPending) -> None:
        print(f"Waiting for {ticket.name} to accept; session code {message.session_code}",
              flush=True)

    session = await Client(ticket, password=password, name=args.name,
                           on_consent_pending=pending).connect()
    print(f"Connected to {session.start.sharer_name}; session code "
          f"{session.start.session_code}", flush=True)
    printer = _Printer()
    viewer = Viewer(session, printer)
    running = asyncio.ensure_future(viewer.run())
    try:
        if args.snapshot is not None:
            await _first_of(printer.complete.wait(), running, args.seconds)
            if viewer.framebuffer is None or not printer.complete.is_set():
                raise SessionError("no complete screen arrived")
            save_png(viewer.framebuffer, args.snapshot)
            print(f"Saved {args.snapshot}", flush=True)
            return 0
        deadline = None if args.seconds is None else asyncio.get_running_loop().time() + (
            args.seconds)
        while not running.done():
            await asyncio.wait({running}, timeout=STATS_INTERVAL)
            stats = viewer.stats
            latency = "-" if stats.latency_ms is None else f"{stats.latency_ms:.1f} ms"
            print(f"{stats.fps:5.1f} fps  {stats.kbit_s:9.1f} kbit/s  round trip {latency}",
                  flush=True)
            if deadline is not None and asyncio.get_running_loop().time() >= deadline:
                return 0
        ended = running.result()
        print(f"Session over: {ended.reason}", flush=True)
        return 0 if ended.code is Reason.ENDED else 1
    finally:
        if not running.done():
            await viewer.close()
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)


async def _first_of(wanted: Coroutine[Any, Any, object], running: asyncio.Future[SessionError],
                    timeout: float | None) -> None:
    """Wait for `wanted`; the session ending first raises its error."""
    waiter: asyncio.Future[Any] = asyncio.ensure_future(wanted)
    try:
        await asyncio.wait([waiter, running], timeout=timeout,
                           return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
    if running.done() and not waiter.done():
        raise running.result()


def main(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(run(args))
    except (SessionError, TicketError) as exc:
        print(f"ra-view: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
