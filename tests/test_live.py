"""Live sharing end to end: a private Xvfb, real X clients drawing on it, the sharer capturing it,
and the expert's client over TLS on 127.0.0.1 decoding what it sees."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import mss
import numpy as np
import pytest
from helpers import free_port, invitation, run, until
from PIL import Image
from Xlib import X
from Xlib import display as xdisplay

from engine.capture import CaptureError, ScreenSource
from engine.channel import SessionError
from engine.client import Client, Viewer, ViewerEvents
from engine.identity import Identity
from engine.invitations import InvitationState, InvitationStore
from engine.protocol import Chat, Cursor, Reason, RefreshRequest
from engine.sharer import ConsentRequest, Sharer, SharerEvents
from engine.tickets import Ticket
from engine.xvfb import Xvfb


class Novice(SharerEvents):
    """Accepts (or not) and records what the sharer tells the novice."""

    def __init__(self, accept: bool = True) -> None:
        self.accept = accept
        self.chats: list[Chat] = []
        self.ended: list[str] = []
        self.notices: list[str] = []

    async def consent(self, request: ConsentRequest) -> bool:
        return self.accept

    def chat(self, message: Chat) -> None:
        self.chats.append(message)

    def session_ended(self, reason: str) -> None:
        self.ended.append(reason)

    def notice(self, text: str) -> None:
        self.notices.append(text)


class Expert(ViewerEvents):
    def __init__(self) -> None:
        self.chats: list[Chat] = []
        self.cursors: list[Cursor] = []
        self.sizes: list[tuple[int, int]] = []

    def chat(self, message: Chat) -> None:
        self.chats.append(message)

    def cursor(self, cursor: Cursor) -> None:
        self.cursors.append(cursor)

    def resized(self, width: int, height: int) -> None:
        self.sizes.append((width, height))


def screen(display: str) -> np.ndarray:
    """What is on the display now, as an independent mss grab (BGR)."""
    with mss.MSS(display=display) as grabber:
        shot = grabber.grab(grabber.monitors[0])
        return np.frombuffer(shot.raw, np.uint8).reshape(shot.height, shot.width, 4)[..., :3]


def shows(viewer: Viewer, display: str) -> bool:
    fb = viewer.framebuffer
    if fb is None:
        return False
    now = screen(display)
    return fb.shape[:2] == now.shape[:2] and np.array_equal(fb[..., :3], now)


def x(server: Xvfb, *command: str) -> None:
    subprocess.run(command, env=server.environ(), check=True, timeout=20,
                   capture_output=True)


@contextlib.contextmanager
def xterm(server: Xvfb, geometry: str = "60x15+30+40") -> Iterator[None]:
    """A real terminal on the display (no blinking cursor: it would change the screen)."""
    process = subprocess.Popen(["xterm", "-geometry", geometry, "+bc", "-xrm",
                                "*cursorBlink: false"], env=server.environ(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        x(server, "xdotool", "search", "--sync", "--class", "xterm")
        yield
    finally:
        process.kill()
        process.wait()


@contextlib.asynccontextmanager
async def sharing(xvfb: Xvfb, store: InvitationStore, identity: Identity,
                  novice: SharerEvents, **options: Any) -> AsyncIterator[tuple[Sharer, Ticket]]:
    """Alice shares `xvfb`; the ticket of an invitation to it."""
    sharer = Sharer(identity=identity, store=store, name="Alice", events=novice,
                    source=lambda: ScreenSource(xvfb.display), **options)
    await sharer.start("127.0.0.1", 0)
    try:
        yield sharer, invitation(store, identity, sharer.port)
    finally:
        await sharer.close()


@contextlib.asynccontextmanager
async def watching(ticket: Ticket, expert: ViewerEvents | None = None
                   ) -> AsyncIterator[tuple[Viewer, asyncio.Task[SessionError]]]:
    session = await Client(ticket, password="pw", name="Bob").connect()
    viewer = Viewer(session, expert)
    task = asyncio.ensure_future(viewer.run())
    try:
        yield viewer, task
    finally:
        if not task.done():
            await viewer.close()
        await asyncio.gather(task, return_exceptions=True)


def test_the_expert_sees_what_x_clients_draw(xvfb, store, identity):
    async def scenario() -> None:
        async with sharing(xvfb, store, identity, Novice()) as (_, ticket):
            expert = Expert()
            async with watching(ticket, expert) as (viewer, _):
                await until(lambda: shows(viewer, xvfb.display))
                for colour in ("#204080", "#ffffff", "#0a0b0c"):
                    x(xvfb, "xsetroot", "-solid", colour)
                    await until(lambda: shows(viewer, xvfb.display))
                with xterm(xvfb):
                    await until(lambda: shows(viewer, xvfb.display))
                    x(xvfb, "xdotool", "type", "--delay", "5", "echo remote-assist 123")
                    await until(lambda: shows(viewer, xvfb.display))
                    x(xvfb, "xdotool", "key", "Return")
                    await until(lambda: shows(viewer, xvfb.display))
                assert expert.sizes[0] == (1024, 768)
                # The pointer travels beside the screen: where it is, and its shape once.
                x(xvfb, "xdotool", "mousemove", "321", "123")
                await until(lambda: any((c.x, c.y) == (321, 123) for c in expert.cursors))
                assert expert.cursors[0].pixels
                assert len(expert.cursors[0].pixels) == 4 * expert.cursors[0].width * (
                    expert.cursors[0].height)
                stats = viewer.stats
                assert viewer.frames >= 5 and viewer.bytes > 0
                assert stats.latency_ms is not None and stats.latency_ms > 0

    run(scenario())


def test_a_resolution_change_mid_session(xvfb, store, identity):
    async def scenario() -> None:
        async with sharing(xvfb, store, identity, Novice()) as (_, ticket):
            expert = Expert()
            async with watching(ticket, expert) as (viewer, _):
                x(xvfb, "xsetroot", "-solid", "#336699")
                await until(lambda: shows(viewer, xvfb.display))
                for width, height in ((800, 600), (1280, 1024), (640, 480)):
                    xvfb.resize(width, height)
                    x(xvfb, "xsetroot", "-solid", "#996633")
                    await until(lambda: shows(viewer, xvfb.display))
                    assert viewer.framebuffer is not None
                    assert viewer.framebuffer.shape == (height, width, 4)
                assert expert.sizes[-1] == (640, 480)

    run(scenario())


def test_disconnect_and_reconnect(xvfb, store, identity):
    async def scenario() -> None:
        novice = Novice()
        async with sharing(xvfb, store, identity, novice) as (_, ticket):
            async with watching(ticket) as (viewer, _):
                await until(lambda: shows(viewer, xvfb.display))
            await until(lambda: len(novice.ended) == 1)
            assert "Bob left" in novice.ended[0]
            x(xvfb, "xsetroot", "-solid", "#123456")
            async with watching(ticket) as (viewer, _):
                await until(lambda: shows(viewer, xvfb.display))
            assert store.get(ticket.id).state is InvitationState.OPEN

    run(scenario())


def test_chat_both_ways_with_the_names_each_side_agreed_to(xvfb, store, identity):
    async def scenario() -> None:
        novice = Novice()
        async with sharing(xvfb, store, identity, novice) as (sharer, ticket):
            expert = Expert()
            async with watching(ticket, expert) as (viewer, _):
                await viewer.send_chat("Which button did you press?")
                # The sender named in the message is not trusted: the novice accepted "Bob".
                await viewer.session.send(Chat(sender="Alice", text="spoofed", time=0.0))
                await until(lambda: len(novice.chats) == 2)
                assert [(c.sender, c.text) for c in novice.chats] == [
                    ("Bob", "Which button did you press?"), ("Bob", "spoofed")]
                assert novice.chats[1].time > 0
                assert await sharer.send_chat("The red one") is not None
                await until(lambda: len(expert.chats) == 1)
                assert (expert.chats[0].sender, expert.chats[0].text) == ("Alice", "The red one")
            await until(lambda: sharer.session is None)
            assert await sharer.send_chat("anyone there?") is None

    run(scenario())


def test_the_novice_ends_the_session(xvfb, store, identity):
    async def scenario() -> None:
        async with (sharing(xvfb, store, identity, Novice()) as (sharer, ticket),
                    watching(ticket) as (viewer, task)):
            await until(lambda: viewer.framebuffer is not None)
            await sharer.end_session()
            ended = await asyncio.wait_for(task, 10)
            assert ended.code is Reason.ENDED
            assert ended.reason == "Alice ended the session"

    run(scenario())


def test_a_stalled_viewer_gets_no_more_than_the_window_then_the_latest_screen(
        xvfb, store, identity):
    async def scenario() -> None:
        async with sharing(xvfb, store, identity, Novice()) as (sharer, ticket):
            session = await Client(ticket, password="pw", name="Bob").connect()
            # Read nothing and acknowledge nothing while the screen changes 40 times.
            for n in range(40):
                x(xvfb, "xsetroot", "-solid", f"#{n:02x}{255 - n:02x}80")
            await asyncio.sleep(0.5)
            streamer = sharer.streamer
            assert streamer is not None
            assert streamer.frames_sent == streamer.window.in_flight == 2
            viewer = Viewer(session)
            task = asyncio.ensure_future(viewer.run())
            await until(lambda: shows(viewer, xvfb.display))
            # Far fewer frames than screen changes: the ones held back coalesced.
            assert viewer.frames < 20
            await viewer.close()
            await task

    run(scenario())


def test_garbage_after_authentication_ends_that_session_only(xvfb, store, identity):
    async def scenario() -> None:
        novice = Novice()
        async with sharing(xvfb, store, identity, novice) as (sharer, ticket):
            session = await Client(ticket, password="pw", name="Bob").connect()
            session.channel.transport.write(b"\xff\xff\xff\x7f" + b"garbage" * 10)
            with pytest.raises(SessionError) as error:
                while True:
                    await session.next_message()
            assert error.value.code is Reason.PROTOCOL_ERROR
            await until(lambda: sharer.session is None)
            async with watching(ticket) as (viewer, _):
                await until(lambda: shows(viewer, xvfb.display))
            assert store.get(ticket.id).state is InvitationState.OPEN

    run(scenario())


def test_a_vanished_display_ends_the_session_and_the_sharer_goes_on(store, identity):
    async def scenario() -> None:
        server = Xvfb(640, 480).start()
        novice = Novice()
        try:
            async with sharing(server, store, identity, novice) as (_, ticket):
                async with watching(ticket) as (viewer, task):
                    await until(lambda: viewer.framebuffer is not None)
                    server.stop()
                    ended = await asyncio.wait_for(task, 10)
                assert ended.code is Reason.INTERNAL_ERROR
                assert "Alice's screen cannot be shown any more" in ended.reason
                assert any("cannot be shared" in n for n in novice.notices)
                # Still serving: the next expert is told the same, not left hanging.
                session = await Client(ticket, password="pw", name="Carol").connect()
                with pytest.raises(SessionError, match="cannot be shown"):
                    while True:
                        await session.next_message()
        finally:
            server.stop()

    run(scenario())


def test_a_declined_expert_sees_no_pixel(xvfb, store, identity):
    async def scenario() -> None:
        async with sharing(xvfb, store, identity, Novice(accept=False)) as (_, ticket):
            with pytest.raises(SessionError) as error:
                await Client(ticket, password="pw", name="Bob").connect()
            assert error.value.code is Reason.DECLINED
            assert "declined" in error.value.reason

    run(scenario())


def test_a_missing_display_is_a_clear_error():
    with pytest.raises(CaptureError, match="cannot open the display :999"):
        ScreenSource(":999")


def test_share_from_the_command_line_and_snapshot_headless(xvfb, xdg, tmp_path):
    """`ra-share serve` on the display, `ra-view --headless --snapshot` from another process."""
    bin_dir = Path(sys.executable).parent
    (tmp_path / "pw").write_text("open sesame\n")
    x(xvfb, "xsetroot", "-solid", "#c08040")
    port = free_port()
    env = xvfb.environ()
    serve = subprocess.Popen(
        [str(bin_dir / "ra-share"), "serve", "--password-file", "pw", "--name", "Alice",
         "--bind", "127.0.0.1", "--port", str(port), "--invite-out", "help.rainvite"],
        cwd=tmp_path, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    assert serve.stdin is not None and serve.stdout is not None
    try:
        lines = iter(serve.stdout.readline, "")
        assert "saved to help.rainvite" in next(lines)
        assert f"on port {port}" in next(lines)
        view = subprocess.Popen(
            [str(bin_dir / "ra-view"), "help.rainvite", "--headless", "--password-file", "pw",
             "--name", "Bob", "--snapshot", "shot.png"],
            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        question = [next(lines) for _ in range(4)]
        assert question[0].startswith("Bob (127.0.0.1:")
        code = question[1].split(":")[1].split("(")[0].strip()
        assert question[3].strip() == "Let them see your screen? [y/N]"
        serve.stdin.write("y\n")
        serve.stdin.flush()
        out, err = view.communicate(timeout=60)
        assert view.returncode == 0, err
        assert f"session code {code}" in out
        with Image.open(tmp_path / "shot.png") as image:
            pixels = np.asarray(image.convert("RGB"))
        assert pixels.shape == (768, 1024, 3)
        assert np.array_equal(pixels[..., ::-1], screen(xvfb.display))
    finally:
        serve.send_signal(signal.SIGINT)
        rest, err = serve.communicate(timeout=30)
    assert serve.returncode == 0, err
    assert "Stopped sharing." in rest


def test_refusals_from_the_command_line(xvfb, xdg, tmp_path, store, identity):
    async def scenario() -> None:
        async with sharing(xvfb, store, identity, Novice(accept=False)) as (_, ticket):
            ticket.save(tmp_path / "t.rainvite")
            (tmp_path / "wrong").write_text("wrong\n")
            (tmp_path / "pw").write_text("pw\n")
            refusals = (("wrong", "wrong password (4 of 5 tries left)"), ("pw", "declined"))
            for password, expected in refusals:
                view = await asyncio.create_subprocess_exec(
                    str(Path(sys.executable).parent / "ra-view"), "t.rainvite", "--headless",
                    "--password-file", password, "--snapshot", "x.png", cwd=tmp_path,
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                _, err = await view.communicate()
                assert view.returncode == 1
                message = err.decode()
                assert message.startswith("ra-view: ") and expected in message
                assert message.count("\n") == 1
            assert not (tmp_path / "x.png").exists()

    run(scenario())


def test_a_refresh_request_brings_a_keyframe(xvfb, store, identity):
    async def scenario() -> None:
        async with sharing(xvfb, store, identity, Novice()) as (_, ticket):
            expert = Expert()
            async with watching(ticket, expert) as (viewer, _):
                await until(lambda: shows(viewer, xvfb.display))
                assert len(expert.sizes) == 1
                # A static screen sends nothing more, until the viewer asks for it whole.
                await asyncio.sleep(0.3)
                frames = viewer.frames
                await viewer.session.send(RefreshRequest())
                await until(lambda: len(expert.sizes) == 2)
                assert viewer.frames == frames + 1
                assert shows(viewer, xvfb.display)

    run(scenario())


def test_monitors(xvfb):
    with pytest.raises(CaptureError, match="there is no monitor 5"):
        ScreenSource(xvfb.display, monitor=5).grab()
    source = ScreenSource(xvfb.display, monitor=0)
    try:
        frame = source.grab()
        assert frame is not None and frame.shape == (768, 1024, 4)
        # Nothing drawn since: no grab, until forced.
        assert source.grab() is None
        assert source.grab(force=True) is not None
    finally:
        source.close()


def test_a_5k_screen_that_does_not_compress_reaches_the_expert(store, identity):
    """Grain over a whole 5120x2880 screen is a 44 MB frame: over the cap of every other
    message, within a frame's."""
    async def scenario(big: Xvfb) -> None:
        async with sharing(big, store, identity, Novice()) as (_, ticket), \
                watching(ticket) as (viewer, task):
            await until(lambda: task.done() or shows(viewer, big.display), timeout=30)
            assert not task.done(), f"the session ended: {task.result().reason}"
            assert viewer.bytes > 40_000_000

    with Xvfb(5120, 2880) as big:
        paint_grain(big)
        run(scenario(big))


def paint_grain(server: Xvfb) -> None:
    """Random pixels over the whole root window, in requests python-xlib can send."""
    display = xdisplay.Display(server.display)
    root = display.screen().root
    gc = root.create_gc()
    width, height = server.width, server.height
    rows = 200_000 // (4 * width)
    rng = np.random.default_rng(5)
    for y in range(0, height, rows):
        strip = rng.integers(0, 256, (min(rows, height - y), width, 4), np.uint8)
        root.put_image(gc, 0, y, width, len(strip), X.ZPixmap, 24, 0, strip.tobytes())
    display.sync()
    display.close()
