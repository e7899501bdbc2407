"""Frame counts read from real MP4 and WebM files (encoded here by FFmpeg's libraries),
and hostile files: truncated, corrupted, lying sizes. Only `UnreadableVideo` escapes."""

from __future__ import annotations

import struct
from fractions import Fraction
from functools import cache
from pathlib import Path

import av
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from comfy_adapter.output_usage import usage_of
from rcc.domain.metered import OutputUsage
from rcc.video_frames import UnreadableVideo, VideoFacts, video_facts_of_bytes
from tests.video_helpers import encode_video, video_bytes


@pytest.mark.parametrize(
    ("suffix", "frames", "fps"),
    [("mp4", 1, 24), ("mp4", 37, 12), ("webm", 1, 24), ("webm", 23, 8), ("mkv", 30, 25)],
)
def test_frames_and_seconds_are_what_was_encoded(
    tmp_path: Path, suffix: str, frames: int, fps: int
) -> None:
    path = encode_video(tmp_path / f"clip.{suffix}", frames, fps)
    facts = video_facts_of_bytes(path.read_bytes())
    assert facts.frames == frames
    # Matroska keeps times in milliseconds (TimecodeScale 1,000,000 ns).
    assert abs(facts.seconds - Fraction(frames, fps)) <= Fraction(1, 1000)


class _Pipe:
    """A write-only target: FFmpeg cannot seek back, so it streams (unknown sizes)."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self.parts.append(bytes(data))
        return len(data)


def test_a_streamed_webm_with_unknown_sizes_is_counted() -> None:
    pipe = _Pipe()
    with av.open(pipe, mode="w", format="webm") as container:
        stream = container.add_stream("libvpx-vp9", rate=Fraction(10))
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for index in range(13):
            frame = av.VideoFrame(32, 32, "rgb24")
            frame.planes[0].update(bytes([index * 9, 0, 0]) * 1024)
            for packet in stream.encode(frame.reformat(format="yuv420p")):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    data = b"".join(pipe.parts)
    assert b"\x18\x53\x80\x67\x01\xff\xff\xff\xff\xff\xff\xff" in data  # Segment: size unknown
    assert video_facts_of_bytes(data) == VideoFacts(frames=13, seconds=Fraction(13, 10))


def test_usage_counts_the_frames_of_video_outputs(tmp_path: Path) -> None:
    encode_video(tmp_path / "a.mp4", 9, 24)
    encode_video(tmp_path / "b.webm", 5, 24)
    (tmp_path / "c.mp4").write_bytes(b"\x00\x00\x00\x18ftypisom" + b"\x00" * 12)  # no moov
    usage = usage_of([tmp_path / "a.mp4", tmp_path / "b.webm", tmp_path / "c.mp4"])
    assert usage == OutputUsage(images=[], video_frames=14)


@cache
def _sample(suffix: str) -> bytes:
    """A small real video of each container, made once per process."""
    return video_bytes(suffix, 6, 12)


def _read(data: bytes) -> VideoFacts | None:
    """The facts, or None when the parser refused with its own error (anything else
    propagates and fails the test)."""
    try:
        return video_facts_of_bytes(data)
    except UnreadableVideo:
        return None


SUFFIXES = st.sampled_from(["mp4", "webm"])
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(suffix=SUFFIXES, cut=st.floats(min_value=0, max_value=1, exclude_max=True))
def test_a_truncated_video_is_refused_or_never_counts_more(suffix: str, cut: float) -> None:
    data = _sample(suffix)
    facts = _read(data[: int(len(data) * cut)])
    assert facts is None or facts.frames <= 6


@FUZZ
@given(
    suffix=SUFFIXES,
    edits=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.binary(min_size=1, max_size=8))),
)
def test_a_corrupted_video_raises_only_our_error(
    suffix: str, edits: list[tuple[float, bytes]]
) -> None:
    data = bytearray(_sample(suffix))
    for where, patch in edits:
        at = int(len(data) * where)
        data[at : at + len(patch)] = patch
    facts = _read(bytes(data))  # anything but UnreadableVideo propagates and fails
    assert facts is None or facts.frames >= 0


def _box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I4s", 8 + len(payload), kind) + payload


FTYP = _box(b"ftyp", b"isom\x00\x00\x02\x00isom")


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("a box larger than the file", FTYP + struct.pack(">I4s", 0xFFFFFFF0, b"moov")),
        ("a 64-bit size of 2**63", FTYP + struct.pack(">I4sQ", 1, b"moov", 1 << 63)),
        ("a box smaller than its header (a loop)", FTYP + struct.pack(">I4s", 4, b"free") * 3),
        (
            "stts claims 4 billion entries",
            FTYP
            + _box(
                b"moov",
                _box(
                    b"trak",
                    _box(
                        b"mdia",
                        _box(b"hdlr", b"\x00" * 8 + b"vide" + b"\x00" * 12)
                        + _box(b"mdhd", b"\x00" * 12 + struct.pack(">II", 1000, 1000) + b"\x00" * 4)
                        + _box(
                            b"minf",
                            _box(
                                b"stbl", _box(b"stts", b"\x00" * 4 + struct.pack(">I", 2**32 - 1))
                            ),
                        ),
                    ),
                ),
            ),
        ),
        ("an EBML element of 2**56 bytes", b"\x1a\x45\xdf\xa3\x01" + b"\xff" * 6 + b"\xfe"),
        ("a zero byte where a length should be", b"\x1a\x45\xdf\xa3\x00\x00"),
        ("a Segment with no video track", b"\x1a\x45\xdf\xa3\x80" + b"\x18\x53\x80\x67\x80"),
        ("neither container", b"<html><body>not a video</body></html>"),
    ],
)
def test_hostile_containers_are_refused_by_name(name: str, data: bytes) -> None:
    with pytest.raises(UnreadableVideo):
        video_facts_of_bytes(data)


def test_a_hundred_thousand_boxes_are_walked_quickly() -> None:
    data = FTYP + _box(b"free", b"") * 100_000
    with pytest.raises(UnreadableVideo, match="without a moov"):
        video_facts_of_bytes(data)
