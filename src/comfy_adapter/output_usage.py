"""What a finished job's downloaded outputs say it produced, for a metered capture:
each still image's size, and the frames of animated outputs (animated WebP/GIF, as
ComfyUI's SaveAnimatedWEBP writes). Read from the file headers; no pixel is decoded.
MP4/WebM frame counts need a container parser and count 0 here."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, UnidentifiedImageError

from rcc.domain.metered import OutputUsage


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
            continue  # not an image we can read: it shows nothing to charge for
    return OutputUsage(images=images, video_frames=frames)
