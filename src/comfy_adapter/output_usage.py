"""What a finished job's downloaded outputs say it produced, for a metered capture:
each still image's size, and the frames of videos and animated images. Read from the
file headers and container tables; no pixel or frame is decoded.

Images (PNG, JPEG, WebP, GIF; animated WebP/GIF as SaveAnimatedWEBP writes them) are
read by Pillow; MP4 and WebM (SaveVideo, SaveWEBM) by `rcc.video_frames`."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, UnidentifiedImageError

from rcc.domain.metered import OutputUsage
from rcc.video_frames import UnreadableVideo, video_facts


def usage_of(paths: list[Path]) -> OutputUsage:
    """The images and video frames these output files hold."""
    images: list[tuple[int, int]] = []
    frames = 0
    for path in paths:
        try:
            with Image.open(path) as image:
                count = int(getattr(image, "n_frames", 1))
                if count > 1:
                    frames += count
                else:
                    images.append(image.size)
        except (UnidentifiedImageError, OSError):
            frames += _video_frames(path)
    return OutputUsage(images=images, video_frames=frames)


def _video_frames(path: Path) -> int:
    """The frames of an MP4 or WebM output; 0 for a file that is neither (or is
    damaged): it shows nothing to charge for, so the rule's minimum applies."""
    try:
        with path.open("rb") as stream:
            return video_facts(stream).frames
    except (UnreadableVideo, OSError):
        return 0
