"""Small real videos for tests, encoded by FFmpeg's libraries through PyAV (a test-only
dependency, the library ComfyUI's own video nodes save with)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av

CODECS = {"mp4": "libx264", "webm": "libvpx-vp9", "mkv": "mpeg4"}


def encode_video(path: Path, frames: int, fps: int, *, size: tuple[int, int] = (32, 32)) -> Path:
    """Write `frames` frames at `fps` into a video whose container is the path's suffix
    (mp4: H.264, webm: VP9, mkv: MPEG-4 part 2)."""
    width, height = size
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(CODECS[path.suffix[1:]], rate=Fraction(fps))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for index in range(frames):
            shade = (index * 37) % 256
            image = av.VideoFrame(width, height, "rgb24")
            image.planes[0].update(bytes([shade, 255 - shade, 128]) * (width * height))
            for packet in stream.encode(image.reformat(format="yuv420p")):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path
