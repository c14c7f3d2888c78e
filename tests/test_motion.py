"""Motion: scrolls and moved rectangles travel as copy-rects, and copies apply correctly."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import pyzstd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import codec_py
from engine._native import motion, tiles
from engine.codec import IMPLEMENTATIONS
from engine.frame_format import COPY, HEADER, MOTION_MIN_RUN, VERSION

HYPOTHESIS = settings(max_examples=60, deadline=None,
                      suppress_health_check=[HealthCheck.too_slow])


def random_frame(rng, height, width):
    return rng.integers(0, 256, (height, width, 4), dtype=np.uint8)


def copy_count(message):
    return HEADER.unpack_from(message)[6]


def copies_of(message):
    count = copy_count(message)
    payload = pyzstd.decompress(message[HEADER.size:])
    return [COPY.unpack_from(payload, COPY.size * n) for n in range(count)]


def stream(frames, tile=8, motion_search=True):
    """Encode `frames` with both implementations; check they agree and decode exactly.

    Returns the messages after the first (keyframe) one.
    """
    pairs = [(enc(tile_size=tile, motion=motion_search), dec())
             for enc, dec in IMPLEMENTATIONS.values()]
    messages = []
    for frame in frames:
        sent = {enc.encode(frame) for enc, _ in pairs}
        assert len(sent) == 1, "native and numpy encoders disagree"
        message = sent.pop()
        for _, dec in pairs:
            if message:
                dec.decode(message)
            np.testing.assert_array_equal(dec.framebuffer[..., :3], frame[..., :3])
        messages.append(message)
    return messages[1:]


@HYPOTHESIS
@given(seed=st.integers(0, 2**32 - 1), height=st.integers(40, 120),
       width=st.integers(30, 140), data=st.data())
def test_scroll_of_a_region_round_trips_as_copies(seed, height, width, data):
    rng = np.random.default_rng(seed)
    frame = random_frame(rng, height, width)
    x0 = data.draw(st.integers(0, width - 16))
    x1 = data.draw(st.integers(x0 + 16, width))  # partial width as often as full
    y0 = data.draw(st.integers(0, height - 2 * MOTION_MIN_RUN - 8))
    y1 = data.draw(st.integers(y0 + 2 * MOTION_MIN_RUN + 8, height))
    step = data.draw(st.integers(1, 8)) * data.draw(st.sampled_from([-1, 1]))  # up or down
    tall = random_frame(rng, (y1 - y0) + 8 * abs(step), x1 - x0)
    frames = []
    for n in range(4):
        frame = frame.copy()
        top = 4 * abs(step) + n * step
        frame[y0:y1, x0:x1] = tall[top:top + (y1 - y0)]
        frames.append(frame)
    for message in stream(frames):
        copies = copies_of(message)
        assert copies, "a textured scroll was not found"
        for sx, sy, w, h, dx, dy in copies:
            assert (sx, w, dx) == (x0, x1 - x0, x0) and sy - dy == step
            assert y0 <= min(sy, dy) and max(sy, dy) + h <= y1


def moved_sprite(rng, height, width, positions, sprite_size):
    """A textured sprite dragged over a textured background, one frame per position."""
    background = random_frame(rng, height, width)
    sprite = random_frame(rng, *sprite_size)
    frames = []
    for x, y in positions:
        frame = background.copy()
        # Clip what lies off the frame: a window dragged past an edge.
        fx0, fy0 = max(0, x), max(0, y)
        fx1, fy1 = min(width, x + sprite_size[1]), min(height, y + sprite_size[0])
        if fx0 < fx1 and fy0 < fy1:
            frame[fy0:fy1, fx0:fx1] = sprite[fy0 - y:fy1 - y, fx0 - x:fx1 - x]
        frames.append(frame)
    return frames


@HYPOTHESIS
@given(seed=st.integers(0, 2**32 - 1), horizontal=st.booleans(),
       step=st.integers(-12, 12).filter(bool), sprite_h=st.integers(20, 50),
       sprite_w=st.integers(20, 50), data=st.data())
def test_moved_rectangle_round_trips_as_copies(seed, horizontal, step, sprite_h, sprite_w,
                                               data):
    """Drags that overlap themselves (small steps) and run off the edges (large origins)."""
    height, width = 90, 110
    x = data.draw(st.integers(-sprite_w // 2, width - sprite_w // 2))
    y = data.draw(st.integers(-sprite_h // 2, height - sprite_h // 2))
    positions = [(x + n * step, y) if horizontal else (x, y + n * step) for n in range(4)]
    rng = np.random.default_rng(seed)
    frames = moved_sprite(rng, height, width, positions, (sprite_h, sprite_w))
    for n, message in enumerate(stream(frames), start=1):
        (px, py), (qx, qy) = positions[n - 1], positions[n]
        # The sprite's lines visible in both frames, along the motion; and its extent across.
        if horizontal:
            seen = visible_in_both(px, qx, sprite_w, width)
            across = min(height, py + sprite_h) - max(0, py)
        else:
            seen = visible_in_both(py, qy, sprite_h, height)
            across = min(width, px + sprite_w) - max(0, px)
        if seen >= 2 * MOTION_MIN_RUN and across >= 16:
            assert copies_of(message), f"move {positions[n - 1]} -> {positions[n]} not found"


def visible_in_both(before, after, size, side):
    """How many of a sprite's lines show on a side of the frame both before and after."""
    lo = max(max(0, before) - before, max(0, after) - after)
    hi = min(min(side, before + size) - before, min(side, after + size) - after)
    return hi - lo


@HYPOTHESIS
@given(seed=st.integers(0, 2**32 - 1), moves=st.lists(
    st.tuples(st.integers(-12, 12), st.integers(-12, 12)), min_size=1, max_size=4))
def test_any_drag_round_trips(seed, moves):
    """Moves of every direction, small sprites, off the edges: whatever the search finds,
    the frames arrive exactly."""
    rng = np.random.default_rng(seed)
    positions = [(30, 20)]
    for dx, dy in moves:
        positions.append((positions[-1][0] + dx, positions[-1][1] + dy))
    stream(moved_sprite(rng, 80, 100, positions, (30, 40)))


nonzero_step = st.integers(-12, 12).filter(bool)


@HYPOTHESIS
@given(seed=st.integers(0, 2**32 - 1),
       moves=st.lists(st.tuples(nonzero_step, nonzero_step), min_size=1, max_size=3))
def test_diagonal_drag_is_one_copy_of_the_window(seed, moves):
    """A window dragged both across and down, as a hand drags it, travels as one copy of
    the whole window from where it was."""
    rng = np.random.default_rng(seed)
    positions = [(40, 40)]
    for dx, dy in moves:
        positions.append((positions[-1][0] + dx, positions[-1][1] + dy))
    sprite_h, sprite_w = 40, 64
    frames = moved_sprite(rng, 130, 150, positions, (sprite_h, sprite_w))
    for ((px, py), (qx, qy)), message in zip(itertools.pairwise(positions), stream(frames),
                                             strict=True):
        assert copies_of(message) == [(px, py, sprite_w, sprite_h, qx, qy)]


def test_diagonal_drag_is_found_beside_a_ticking_counter():
    """A counter that changes in a corner every frame widens the box of changes far past the
    window, and puts changes on rows the window does not touch; the drag is still one copy."""
    rng = np.random.default_rng(5)
    positions = [(140, 90), (132, 96), (124, 101)]
    frames = moved_sprite(rng, 240, 320, positions, (60, 96))
    for frame in frames:
        frame[:8, :24] = rng.integers(0, 256, (8, 24, 4), dtype=np.uint8)  # tick
    for ((px, py), (qx, qy)), message in zip(itertools.pairwise(positions), stream(frames),
                                             strict=True):
        assert copies_of(message) == [(px, py, 96, 60, qx, qy)]


copy_rect = st.tuples(st.integers(0, 39), st.integers(0, 29), st.integers(1, 40),
                      st.integers(1, 30), st.integers(0, 39), st.integers(0, 29))


def clip(rects, height=30, width=40):
    """Shrink drawn copies until source and destination both fit the frame."""
    out = []
    for sx, sy, w, h, dx, dy in rects:
        w = min(w, width - sx, width - dx)
        h = min(h, height - sy, height - dy)
        out.append((sx, sy, w, h, dx, dy))
    return out


def copied_slowly(frame, rects):
    """What the format says copies do: in order, each through a temporary."""
    frame = frame.copy()
    for sx, sy, w, h, dx, dy in rects:
        frame[dy:dy + h, dx:dx + w] = frame[sy:sy + h, sx:sx + w].copy()
    return frame


@HYPOTHESIS
@given(seed=st.integers(0, 2**32 - 1), rects=st.lists(copy_rect, min_size=1, max_size=5))
def test_decoders_apply_overlapping_copies_in_order(seed, rects):
    rects = clip(rects)
    rng = np.random.default_rng(seed)
    frame = random_frame(rng, 30, 40)
    expected = copied_slowly(frame, rects)
    payload = b"".join(COPY.pack(*r) for r in rects)
    message = HEADER.pack(VERSION, 0, 8, 40, 30, 0, len(rects), 0,
                          len(payload)) + pyzstd.compress(payload)
    for encoder_cls, decoder_cls in IMPLEMENTATIONS.values():
        decoder = decoder_cls()
        decoder.decode(encoder_cls(tile_size=8).encode(frame))
        decoder.decode(message)
        np.testing.assert_array_equal(decoder.framebuffer[..., :3], expected[..., :3])
    array = np.array(rects, np.int32)
    for apply in (motion.apply_copies, codec_py.apply_copies):
        fb = frame.copy()
        apply(fb, array)
        np.testing.assert_array_equal(fb, expected)


def test_native_copies_refuse_rects_off_the_frame():
    fb = np.zeros((10, 10, 4), np.uint8)
    for bad in [(0, 0, 11, 1, 0, 0), (0, 0, 1, 1, 0, 10), (-1, 0, 1, 1, 0, 0),
                (0, 0, 0, 1, 0, 0)]:
        with pytest.raises(ValueError):
            motion.apply_copies(fb, np.array([bad], np.int32))


@HYPOTHESIS
@given(seed=st.integers(0, 2**32 - 1), by_rows=st.booleans(), data=st.data())
def test_line_hashes_agree_and_see_every_pixel(seed, by_rows, data):
    rng = np.random.default_rng(seed)
    frame = random_frame(rng, 50, 60)
    x0 = data.draw(st.integers(0, 58))
    x1 = data.draw(st.integers(x0 + 1, 60))
    y0 = data.draw(st.integers(0, 48))
    y1 = data.draw(st.integers(y0 + 1, 50))
    native = motion.line_hashes(frame, x0, y0, x1, y1, by_rows)
    np.testing.assert_array_equal(native, codec_py.line_hashes(frame, x0, y0, x1, y1, by_rows))
    # One colour byte changed changes its line's hash; the padding byte changes nothing.
    # Column hashes read every COLUMN_ROW_STEP-th row of the box only.
    step = 1 if by_rows else codec_py.COLUMN_ROW_STEP
    y = y0 + step * data.draw(st.integers(0, (y1 - 1 - y0) // step))
    x = data.draw(st.integers(x0, x1 - 1))
    line = y - y0 if by_rows else x - x0
    edited = frame.copy()
    edited[y, x, data.draw(st.integers(0, 2))] ^= data.draw(st.integers(1, 255))
    edited[y, x, 3] ^= 0xFF
    changed = motion.line_hashes(edited, x0, y0, x1, y1, by_rows)
    assert changed[line] != native[line]
    assert np.delete(changed, line).tolist() == np.delete(native, line).tolist()


def text_like(rng, height, width):
    """Dark strokes on paper: most lines repeat, as in a terminal or an editor."""
    frame = np.full((height, width, 4), 250, np.uint8)
    for top in range(2, height - 12, 18):
        strokes = rng.random((12, width)) < 0.3
        frame[top:top + 12][strokes] = (30, 30, 30, 255)
    return frame


def test_scrolling_text_costs_far_less_with_motion():
    rng = np.random.default_rng(21)
    page = text_like(rng, 400, 300)
    frames = [page[n * 18:n * 18 + 240].copy() for n in range(5)]
    with_motion = sum(map(len, stream(frames, tile=32)))
    without = sum(map(len, stream(frames, tile=32, motion_search=False)))
    assert with_motion * 3 < without


def test_row_hashes_kept_for_the_next_search_are_the_frames():
    """What a search keeps of the new frame's rows is what hashing them gives, and handing
    the reference's rows to the next search changes none of its copies."""
    rng = np.random.default_rng(5)
    page = text_like(rng, 300, 120)
    ref, cur = page[0:200].copy(), page[18:218].copy()
    tile = 16
    first_diff = np.empty((200 // tile + 1, 120 // tile + 1), np.int32)
    tiles.scan(cur, ref, tile, first_diff, 0, 0, first_diff.shape[1], first_diff.shape[0])
    kept = motion.RowHashes(200)
    copies = motion.find_motion(cur, ref, tile, first_diff, 4, MOTION_MIN_RUN, None, kept)
    assert len(copies)
    given = motion.RowHashes(200)
    motion.find_motion(ref, page[36:236], tile, first_diff, 4, MOTION_MIN_RUN, None, given)
    # `given` now holds rows of `ref` (it was the frame there): the same copies come out.
    again = motion.find_motion(cur, ref, tile, first_diff, 4, MOTION_MIN_RUN, given, None)
    np.testing.assert_array_equal(again, copies)
    with pytest.raises(ValueError, match="row hashes of 200 rows for a frame of 100"):
        motion.find_motion(cur[:100], ref[:100], tile, first_diff[:7], 4, MOTION_MIN_RUN,
                           kept, None)


def test_kept_row_hashes_are_forgotten_when_the_reference_changes_without_a_search():
    """A blink (too small to search) and a keyframe change the reference between scrolls;
    the encoder must not take the rows it kept from before them: native and numpy agree."""
    rng = np.random.default_rng(9)
    page = text_like(rng, 600, 160)
    frames, offset = [], 0
    for step in ("scroll", "scroll", "blink", "scroll", "scroll", "keyframe", "scroll"):
        frame = page[offset:offset + 240].copy()
        if step == "blink":
            frame = frames[-1].copy()
            frame[40:60, 20:28] = 0  # one tile: no search
        elif step == "keyframe":
            frame = np.ascontiguousarray(page[::-1][offset:offset + 240])
        else:
            offset += 18
            frame = page[offset:offset + 240].copy()
            if frames and step == "scroll" and frames[-1][40, 20, 0] == 0:
                frame[40 - 18:60 - 18, 20:28] = 0  # the blink scrolls up with the text
        frames.append(frame)
    pairs = [(enc(tile_size=16), dec()) for enc, dec in IMPLEMENTATIONS.values()]
    for n, frame in enumerate(frames):
        sent = {enc.encode(frame, keyframe=n == 5) for enc, _ in pairs}
        assert len(sent) == 1, f"frame {n}: native and numpy encoders disagree"
        message = sent.pop()
        for _, dec in pairs:
            if message:
                dec.decode(message)
            np.testing.assert_array_equal(dec.framebuffer[..., :3], frame[..., :3])


def test_small_changes_skip_the_search(monkeypatch):
    """Typing touches a tile or two: the search must not run for it."""
    calls = []
    encoder_cls, _ = IMPLEMENTATIONS["native"]
    encoder = encoder_cls(tile_size=16)
    search = encoder.kernel.find_motion
    monkeypatch.setattr(encoder.kernel, "find_motion",
                        lambda *args: calls.append(args) or search(*args))
    frame = random_frame(np.random.default_rng(3), 64, 64)
    encoder.encode(frame)
    frame = frame.copy()
    frame[3:10, 3:30] = 0  # two tiles
    assert encoder.encode(frame) and not calls
    frame = np.roll(frame, 5, axis=0)  # every tile
    assert encoder.encode(frame) and len(calls) == 1


def test_each_group_of_changes_is_searched_on_its_own():
    """A scroll is found while something else changes far away, and so is a second move."""
    rng = np.random.default_rng(8)
    tall = random_frame(rng, 200, 80)
    sprite = random_frame(rng, 30, 40)
    frame = random_frame(rng, 200, 240)
    frames = []
    for n in range(4):
        frame = frame.copy()
        frame[20:120, 10:90] = tall[10 + 4 * n:110 + 4 * n]  # scrolls up 4 px a frame
        frame[150:190, 20:60] = rng.integers(0, 256, (40, 40, 4), np.uint8)  # a "video"
        frame[10:40, 130:230] = frame[0, 0]  # a window dragged right 6 px a frame
        frame[10:40, 140 + 6 * n:180 + 6 * n] = sprite
        frames.append(frame)
    for message in stream(frames):
        moves = {(sx - dx, sy - dy) for sx, sy, _, _, dx, dy in copies_of(message)}
        assert moves == {(0, 4), (-6, 0)}


@HYPOTHESIS
@given(seed=st.integers(0, 2**32 - 1), step=st.integers(1, 17),
       left=st.integers(4, 40), right=st.integers(4, 40), top=st.integers(12, 24),
       counter=st.tuples(st.integers(4, 12), st.integers(8, 60)))
def test_scroll_is_found_beside_a_change_that_widens_the_box(seed, step, left, right, top,
                                                             counter):
    """A terminal scrolls over a textured wallpaper while a counter ticks in the corner.

    The counter's tiles touch the terminal's, so the box of every change takes in wallpaper
    beside the terminal; rows that include it match at no offset. The copy must still be
    found, as wide as the terminal (measured on Xvfb with an xterm: 100 KB a frame without).
    """
    rng = np.random.default_rng(seed)
    height, width = 200, 180
    x0, x1, y0, y1 = left, width - right, top, height - 8
    page = text_like(rng, (y1 - y0) + 4 * step + 20, x1 - x0)
    counter_h, counter_w = counter
    frame = random_frame(rng, height, width)
    frames = []
    for n in range(4):
        frame = frame.copy()
        frame[y0:y1, x0:x1] = page[n * step:n * step + (y1 - y0)]
        frame[0:counter_h, 0:counter_w] = rng.integers(0, 256, (counter_h, counter_w, 4),
                                                       np.uint8)
        frames.append(frame)
    for message in stream(frames, tile=16):
        copies = copies_of(message)
        assert copies, "the scroll was not found beside the counter"
        for sx, sy, w, h, dx, dy in copies:
            assert (sx, w, dx, sy - dy) == (x0, x1 - x0, x0, step)
            assert y0 <= min(sy, dy) and max(sy, dy) + h <= y1
