"""Small real videos for tests, encoded by FFmpeg's libraries through PyAV (a test-only
dependency, the library ComfyUI's own video nodes save with)."""

from __future__ import annotations

import io
from fractions import Fraction
from pathlib import Path

import av

CODECS = {"mp4": "libx264", "webm": "libvpx-vp9", "mkv": "mpeg4"}
FORMATS = {"mp4": "mp4", "webm": "webm", "mkv": "matroska"}


def video_bytes(kind: str, frames: int, fps: float, size: tuple[int, int] = (32, 32)) -> bytes:
    """`frames` frames at `fps` in a `kind` container (mp4: H.264, webm: VP9, mkv:
    MPEG-4 part 2), each frame a different flat colour."""
    width, height = size
    out = io.BytesIO()
    with av.open(out, mode="w", format=FORMATS[kind]) as container:
        stream = container.add_stream(CODECS[kind], rate=Fraction(fps).limit_denominator(1000))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for index in range(frames):
            shade = (index * 37) % 256
            image = av.VideoFrame(width, height, "rgb24")
            image.planes[0].update(bytes([shade, 255 - shade, 128]) * (width * height))
            for packet in stream.encode(image.reformat(format="yuv420p")):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return out.getvalue()


def encode_video(path: Path, frames: int, fps: float, *, size: tuple[int, int] = (32, 32)) -> Path:
    """Write `video_bytes` to a path whose suffix names the container."""
    path.write_bytes(video_bytes(path.suffix[1:], frames, fps, size))
    return path
