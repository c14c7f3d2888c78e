"""Round trips and hostile input for both codec implementations."""

from __future__ import annotations

import struct

import numpy as np
import pytest
import pyzstd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.codec import IMPLEMENTATIONS, CodecError, Mode, Rect
from engine.frame_format import COPY, FLAG_KEYFRAME, FLAG_STORED, HEADER, LARGE_PAYLOAD, VERSION

IMPL_NAMES = sorted(IMPLEMENTATIONS)
HYPOTHESIS = settings(max_examples=60, deadline=None,
                      suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(params=IMPL_NAMES)
def impl(request):
    return IMPLEMENTATIONS[request.param]


def random_frame(rng, height, width):
    return rng.integers(0, 256, (height, width, 4), dtype=np.uint8)


def assert_shows(decoder, frame):
    fb = decoder.framebuffer
    assert fb is not None and fb.shape == frame.shape
    np.testing.assert_array_equal(fb[..., :3], frame[..., :3])
    assert (fb[..., 3] == 0xFF).all()


def covered(rects, height, width):
    mask = np.zeros((height, width), bool)
    for r in rects:
        mask[r.y:r.y + r.height, r.x:r.x + r.width] = True
    return mask


# --- a stream of edits, as hypothesis draws them --------------------------------------------

edit = st.one_of(
    st.tuples(st.just("noise"), st.integers(0, 2**32 - 1), st.floats(0, 1), st.floats(0, 1),
              st.integers(1, 90), st.integers(1, 90)),
    st.tuples(st.just("fill"), st.integers(0, 2**24 - 1), st.floats(0, 1), st.floats(0, 1),
              st.integers(1, 150), st.integers(1, 150)),
    st.tuples(st.just("pixel"), st.integers(0, 2**24 - 1), st.floats(0, 1), st.floats(0, 1)),
    st.tuples(st.just("shift"), st.integers(-20, 20), st.integers(-20, 20)),
    st.tuples(st.just("same"),),
)


def apply_edit(frame, change):
    height, width = frame.shape[:2]
    kind = change[0]
    if kind == "same":
        return frame
    frame = frame.copy()
    if kind == "shift":
        frame[:] = np.roll(frame, (change[1], change[2]), axis=(0, 1))
        return frame
    y, x = int(change[3] * (height - 1)), int(change[2] * (width - 1))
    if kind == "pixel":
        frame[y, x, :3] = np.frombuffer(change[1].to_bytes(3, "little"), np.uint8)
        return frame
    region = frame[y:y + change[5], x:x + change[4]]
    if kind == "fill":
        region[..., :3] = np.frombuffer(change[1].to_bytes(3, "little"), np.uint8)
    else:
        rng = np.random.default_rng(change[1])
        region[...] = rng.integers(0, 256, region.shape, dtype=np.uint8)
    return frame


@HYPOTHESIS
@given(height=st.integers(1, 150), width=st.integers(1, 150), tile=st.sampled_from([8, 16, 64]),
       seed=st.integers(0, 2**32 - 1), edits=st.lists(edit, max_size=6))
def test_round_trip_and_implementations_agree(height, width, tile, seed, edits):
    rng = np.random.default_rng(seed)
    frame = random_frame(rng, height, width)
    if seed % 2:  # half the streams start from flat colour, as desktops do
        frame[..., :3] = frame[0, 0, :3]
    pairs = {name: (enc(tile_size=tile), dec()) for name, (enc, dec) in IMPLEMENTATIONS.items()}
    for step, change in enumerate([("same",), *edits]):
        previous = frame
        frame = apply_edit(frame, change)
        messages = {name: enc.encode(frame) for name, (enc, _) in pairs.items()}
        assert len(set(messages.values())) == 1, "native and numpy encoders disagree"
        message = messages["native"]
        if step and np.array_equal(frame, previous):
            assert message == b""
        for _, dec in pairs.values():
            if message:
                rects = dec.decode(message)
                changed = (frame != previous).any(axis=2) if step else np.ones((height, width))
                assert not (changed.astype(bool) & ~covered(rects, height, width)).any()
            assert_shows(dec, frame)


@pytest.mark.parametrize("tile", [8, 64])
def test_single_pixel_at_every_corner_and_edge(impl, tile):
    encoder_cls, decoder_cls = impl
    height, width = 70, 130  # neither a multiple of the tile: edge tiles are partial
    rng = np.random.default_rng(7)
    base = random_frame(rng, height, width)
    encoder, decoder = encoder_cls(tile_size=tile), decoder_cls()
    decoder.decode(encoder.encode(base))
    points = [(y, x) for y in (0, tile - 1, tile, height // 2, height - 1)
              for x in (0, tile - 1, tile, width // 2, width - 1)]
    frame = base
    for y, x in points:
        frame = frame.copy()
        frame[y, x, :3] ^= 0x5A
        rects = decoder.decode(encoder.encode(frame))
        assert rects == [Rect(x - x % tile, y - y % tile, min(tile, width - x + x % tile),
                              min(tile, height - y + y % tile))]
        assert_shows(decoder, frame)


def test_solid_tiles_are_three_bytes(impl):
    encoder_cls, decoder_cls = impl
    frame = np.zeros((128, 192, 4), np.uint8)
    frame[:64, :, :3] = (10, 20, 30)
    frame[64:, :, :3] = (200, 100, 0)
    message = encoder_cls().encode(frame)
    header = HEADER.unpack_from(message)
    assert header[5] == 6 and header[8] == 6 * 5 + 6 * 3  # 6 tiles, all solid
    decoder = decoder_cls()
    decoder.decode(message)
    assert_shows(decoder, frame)


def test_modes_follow_the_content(impl):
    """A small in-place edit travels as XOR; content that moved travels raw."""
    encoder_cls, decoder_cls = impl
    rng = np.random.default_rng(3)
    texture = random_frame(rng, 64, 64)
    encoder = encoder_cls()
    decoder = decoder_cls()
    decoder.decode(encoder.encode(texture))
    edited = texture.copy()
    edited[10:12, 5:40, :3] = 0
    decoder.decode(message := encoder.encode(edited))
    assert payload_modes(message) == [Mode.XOR]
    moved = np.ascontiguousarray(np.transpose(edited, (1, 0, 2)))
    decoder.decode(message := encoder.encode(moved))
    assert payload_modes(message) == [Mode.RAW]
    assert_shows(decoder, moved)


def test_what_does_not_compress_is_stored(impl):
    """A large payload of grain travels as it is; one that zstd shrinks is compressed. Either
    way both implementations send the same bytes and the frame arrives exactly."""
    encoder_cls, decoder_cls = impl
    rng = np.random.default_rng(21)
    height, width = 480, 800  # 1.15 MB of packed pixels: over LARGE_PAYLOAD
    assert 3 * height * width > LARGE_PAYLOAD
    grain = random_frame(rng, height, width)
    ramp = np.zeros_like(grain)
    ramp[..., :3] = (np.arange(width) % 251).astype(np.uint8)[None, :, None]
    ramp[::7, :, 1] ^= rng.integers(0, 256, (len(range(0, height, 7)), width), np.uint8)
    twin = IMPLEMENTATIONS[next(n for n in IMPL_NAMES if IMPLEMENTATIONS[n] != impl)][0]()
    encoder, decoder = encoder_cls(), decoder_cls()
    for frame, stored in ((grain, True), (ramp, False), (grain, True)):
        message = encoder.encode(frame)
        assert message == twin.encode(frame)
        assert bool(message[1] & FLAG_STORED) == stored
        if stored:
            assert len(message) == HEADER.size + HEADER.unpack_from(message)[8]
        else:
            assert len(message) < 3 * height * width // 2
        decoder.decode(message)
        assert_shows(decoder, frame)


def payload_modes(message):
    count, copies = HEADER.unpack_from(message)[5:7]
    payload = pyzstd.decompress(message[HEADER.size:])
    start = COPY.size * copies + 4 * count
    return list(payload[start:start + count])


def test_resize_mid_stream_sends_a_keyframe(impl):
    encoder_cls, decoder_cls = impl
    rng = np.random.default_rng(5)
    encoder, decoder = encoder_cls(), decoder_cls()
    for height, width in [(100, 100), (100, 100), (37, 301), (37, 301), (200, 90)]:
        frame = random_frame(rng, height, width)
        message = encoder.encode(frame)
        assert bool(message[1] & FLAG_KEYFRAME) == (decoder.framebuffer is None
                                                    or decoder.framebuffer.shape != frame.shape)
        assert decoder.decode(message)
        assert_shows(decoder, frame)


def test_keyframe_on_request_and_skipped_frames_coalesce(impl):
    encoder_cls, decoder_cls = impl
    rng = np.random.default_rng(11)
    encoder, decoder = encoder_cls(tile_size=16), decoder_cls()
    frames = [random_frame(rng, 40, 50) for _ in range(3)]
    decoder.decode(encoder.encode(frames[0]))
    # frames[1] is captured but never encoded: the reference stays at frames[0].
    decoder.decode(encoder.encode(frames[2]))
    assert_shows(decoder, frames[2])
    np.testing.assert_array_equal(encoder.reference, frames[2])
    encoder.request_keyframe()
    message = encoder.encode(frames[2])
    assert message[1] & FLAG_KEYFRAME
    late_joiner = decoder_cls()
    late_joiner.decode(message)
    assert_shows(late_joiner, frames[2])


def test_scan_maps_agree():
    from engine._native import tiles
    from engine.codec_py import scan

    rng = np.random.default_rng(2)
    a = random_frame(rng, 99, 141)
    b = a.copy()
    for y, x in rng.integers(0, (99, 141), (12, 2)):
        b[y, x, rng.integers(0, 4)] ^= 1
    for tile in (8, 16, 64):
        columns, rows = -(-141 // tile), -(-99 // tile)
        ranges = [(0, 0, columns, rows), (1, 1, columns, rows), (0, 1, columns - 1, 2),
                  (1, 0, 1, rows)]
        for tile_range in ranges:
            native = np.full((rows, columns), -7, np.int32)
            twin = native.copy()
            count = tiles.scan(b, a, tile, native, *tile_range)
            assert count == scan(b, a, tile, twin, tile_range)
            np.testing.assert_array_equal(native, twin)
        full = np.empty((rows, columns), np.int32)
        assert tiles.scan(b, a, tile, full, 0, 0, columns, rows) == len(np.unique(
            [(y // tile, x // tile) for y, x in zip(*np.nonzero((a != b).any(axis=2)),
                                                     strict=True)], axis=0))
    assert tiles.frames_equal(a.reshape(-1), a.copy().reshape(-1))
    assert not tiles.frames_equal(a.reshape(-1), b.reshape(-1))


def test_bad_frames_are_refused_by_the_encoder(impl):
    encoder = impl[0]()
    for bad in (np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4, 4), np.uint16),
                np.zeros((0, 4, 4), np.uint8)):
        with pytest.raises(ValueError):
            encoder.encode(bad)
    with pytest.raises(ValueError):
        impl[0](tile_size=4)


# --- hostile input ----------------------------------------------------------------------------

def build_message(*, width=20, height=10, tile=8, keyframe=False, tiles=(), copies=(),
                  version=VERSION, flags=None, reserved=0, payload_size=None, payload=None,
                  stored=False):
    """A message from explicit parts: tiles are (index, mode, data bytes)."""
    if payload is None:
        payload = b"".join(COPY.pack(*c) for c in copies)
        payload += b"".join(struct.pack("<I", t[0]) for t in tiles)
        payload += bytes(t[1] for t in tiles) + b"".join(t[2] for t in tiles)
    if flags is None:
        flags = (FLAG_KEYFRAME if keyframe else 0) | (FLAG_STORED if stored else 0)
    size = len(payload) if payload_size is None else payload_size
    header = HEADER.pack(version, flags, tile, width, height, len(tiles), len(copies),
                         reserved, size)
    return header + (payload if stored or not payload else pyzstd.compress(payload))


@pytest.fixture
def primed(impl):
    """A decoder holding a 20x10 frame (tile 8: 3x2 tiles) and that frame."""
    rng = np.random.default_rng(9)
    frame = random_frame(rng, 10, 20)
    decoder = impl[1]()
    decoder.decode(impl[0](tile_size=8).encode(frame))
    return decoder, frame


BAD_MESSAGES = {
    "empty": b"",
    "short header": b"\x01\x00\x08",
    "future version": build_message(version=2),
    "unknown flag": build_message(flags=0x80),
    "reserved set": build_message(reserved=1),
    "tile too small": build_message(tile=4),
    "tile too large": build_message(tile=512),
    "zero width": build_message(width=0),
    "wrong size for an update": build_message(width=21, tiles=[(0, Mode.SOLID, b"abc")]),
    "huge keyframe": build_message(width=65535, height=65535, keyframe=True),
    "index out of range": build_message(tiles=[(6, Mode.SOLID, b"abc")]),
    "indices not increasing": build_message(tiles=[(2, Mode.SOLID, b"abc"),
                                                   (1, Mode.SOLID, b"abc")]),
    "index repeated": build_message(tiles=[(1, Mode.SOLID, b"abc"), (1, Mode.SOLID, b"abc")]),
    "unknown mode": build_message(tiles=[(0, 3, b"abc")]),
    "short tile data": build_message(tiles=[(0, Mode.RAW, bytes(191))]),
    "long tile data": build_message(tiles=[(0, Mode.SOLID, b"abcd")]),
    "xor in a keyframe": build_message(keyframe=True, tiles=[
        (i, Mode.XOR if i == 0 else Mode.SOLID, bytes(192) if i == 0 else b"abc")
        for i in range(6)]),
    "keyframe missing tiles": build_message(keyframe=True, tiles=[(0, Mode.SOLID, b"abc")]),
    "copy off the frame": build_message(copies=[(15, 0, 6, 2, 0, 0)]),
    "copy of nothing": build_message(copies=[(0, 0, 0, 2, 4, 4)]),
    "copy past the bottom": build_message(copies=[(0, 0, 4, 4, 0, 7)]),
    "payload size lies high": build_message(tiles=[(0, Mode.SOLID, b"abc")], payload_size=9),
    "payload size lies low": build_message(tiles=[(0, Mode.SOLID, b"abc")], payload_size=7),
    "payload claims 4 GB": build_message(tiles=[(0, Mode.SOLID, b"abc")],
                                         payload_size=2**32 - 1),
    "payload not zstd": HEADER.pack(VERSION, 0, 8, 20, 10, 1, 0, 0, 8) + b"not zstd at all",
    "payload missing": HEADER.pack(VERSION, 0, 8, 20, 10, 1, 0, 0, 8),
    "junk after an empty message": HEADER.pack(VERSION, 0, 8, 20, 10, 0, 0, 0, 0) + b"x",
    "junk after the payload": build_message(tiles=[(0, Mode.SOLID, b"abc")]) + b"\x00",
    "stored payload cut short": build_message(tiles=[(0, Mode.SOLID, b"abc")], stored=True)[:-1],
    "junk after a stored payload": build_message(tiles=[(0, Mode.SOLID, b"abc")],
                                                 stored=True) + b"\x00",
    "compressed payload flagged stored": build_message(
        tiles=[(0, Mode.SOLID, b"abc")], flags=FLAG_STORED),
    "stored payload of the wrong size": build_message(tiles=[(0, Mode.SOLID, b"abc")],
                                                      stored=True, payload_size=9),
    # A zstd frame header that claims 4 GiB of content, then one tiny raw block.
    "zstd frame claims 4 GB": HEADER.pack(VERSION, 0, 8, 20, 10, 1, 0, 0, 8)
    + struct.pack("<IB", 0xFD2FB528, 0xE0) + struct.pack("<Q", 2**32)
    + bytes([0x41, 0x00, 0x00]) + b"\x00\x00\x00\x00\x00\x00\x00\x00",
}


@pytest.mark.parametrize("name", sorted(BAD_MESSAGES))
def test_malformed_message_is_refused_and_loses_nothing(primed, name):
    decoder, frame = primed
    with pytest.raises(CodecError):
        decoder.decode(BAD_MESSAGES[name])
    assert_shows(decoder, frame)


def test_zstd_bomb_is_cut_off_at_the_claimed_size(primed):
    decoder, frame = primed
    bomb = pyzstd.compress(bytes(64 * 1024 * 1024))
    message = HEADER.pack(VERSION, 0, 8, 20, 10, 1, 0, 0, 8) + bomb
    with pytest.raises(CodecError):
        decoder.decode(message)
    assert_shows(decoder, frame)


def test_update_before_any_keyframe_is_refused(impl):
    with pytest.raises(CodecError, match="keyframe"):
        impl[1]().decode(build_message(tiles=[(0, Mode.SOLID, b"abc")]))


def test_copy_rects_overlapping_themselves(impl):
    decoder, frame = impl[1](), np.random.default_rng(4).integers(0, 256, (10, 20, 4), np.uint8)
    decoder.decode(impl[0](tile_size=8).encode(frame))
    expected = decoder.framebuffer.copy()
    # Down-right by (2, 3), then left by 5: each reads what the previous copy left.
    expected[3:10, 2:18] = expected[0:7, 0:16].copy()
    expected[0:4, 0:15] = expected[0:4, 5:20].copy()
    rects = decoder.decode(build_message(copies=[(0, 0, 16, 7, 2, 3), (5, 0, 15, 4, 0, 0)]))
    assert rects == [Rect(2, 3, 16, 7), Rect(0, 0, 15, 4)]
    np.testing.assert_array_equal(decoder.framebuffer, expected)


def test_every_truncation_is_refused(primed, impl):
    decoder, frame = primed
    rng = np.random.default_rng(12)
    update = frame.copy()
    update[2:9, 3:17] = rng.integers(0, 256, (7, 14, 4), np.uint8)
    message = impl[0](tile_size=8).encode(frame) and _encode_after(impl, frame, update)
    for length in range(len(message)):
        with pytest.raises(CodecError):
            decoder.decode(message[:length])
        assert_shows(decoder, frame)
    decoder.decode(message)
    assert_shows(decoder, update)


def _encode_after(impl, first, second):
    encoder = impl[0](tile_size=8)
    encoder.encode(first)
    return encoder.encode(second)


@HYPOTHESIS
@given(data=st.data())
def test_bit_flips_never_crash_or_corrupt(data):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    first = random_frame(rng, 30, 40)
    second = first.copy()
    second[5:25, 3:33] = rng.integers(0, 256, (20, 30, 4), np.uint8)
    for encoder_cls, decoder_cls in IMPLEMENTATIONS.values():
        encoder, decoder = encoder_cls(tile_size=16), decoder_cls()
        decoder.decode(encoder.encode(first))
        message = bytearray(encoder.encode(second))
        for _ in range(data.draw(st.integers(1, 4))):
            bit = data.draw(st.integers(0, 8 * len(message) - 1))
            message[bit // 8] ^= 1 << (bit % 8)
        try:
            decoder.decode(bytes(message))
        except CodecError:
            assert_shows(decoder, first)
        else:
            # A flip that still decodes can only have landed in pixel data.
            assert decoder.framebuffer.shape == first.shape


@HYPOTHESIS
@given(junk=st.binary(max_size=200), keep_header=st.booleans())
def test_random_bytes_are_refused(junk, keep_header):
    header = HEADER.pack(VERSION, 0, 8, 20, 10, 2, 0, 0, 16) if keep_header else b""
    for _, decoder_cls in IMPLEMENTATIONS.values():
        decoder = decoder_cls()
        with pytest.raises(CodecError):
            decoder.decode(header + junk)
        assert decoder.framebuffer is None
