"""Price rules, pure: the estimate held at creation from the inputs, and the charge a
succeeded job captures from what its outputs show (never above the hold)."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from comfy_adapter.output_usage import usage_of
from rcc.domain.metered import (
    FixedPrice,
    OutputUsage,
    PerMegapixelStep,
    PerVideoFrame,
    charge_for_outputs,
    estimate_rcc,
    price_rule_problems,
)

IMAGE = PerMegapixelStep(width="width", height="height", steps="steps", millircc=100, min_rcc=1)
# 4 milli-RCC a frame (24 fps: about 0.1 RCC a second), at least 2 RCC.
VIDEO = PerVideoFrame(seconds="seconds", fps=24, millircc=4, min_rcc=2)


def test_fixed_is_the_default_rule_and_captures_its_whole_hold() -> None:
    assert estimate_rcc(FixedPrice(rcc=5), {}) == 5
    assert charge_for_outputs(FixedPrice(rcc=5), {}, OutputUsage(), held_rcc=5) == 5


def test_per_megapixel_step_estimates_from_the_inputs_rounding_up_once() -> None:
    assert estimate_rcc(IMAGE, {"width": 512, "height": 512, "steps": 20}) == 1  # 0.52 -> 1
    assert estimate_rcc(IMAGE, {"width": 1024, "height": 1024, "steps": 50}) == 6  # 5.24 -> 6
    assert estimate_rcc(IMAGE, {"width": 256, "height": 256, "steps": 1}) == 1  # the minimum


def test_a_video_is_held_at_its_estimate_and_captured_for_the_frames_it_made() -> None:
    values = {"seconds": 60}
    held = estimate_rcc(VIDEO, values)
    assert held == 6  # 60 s x 24 fps = 1,440 frames x 4 milli-RCC = 5.76 -> 6
    # The outputs show 10 s were made (240 frames): 0.96 -> 1, raised to the minimum 2.
    assert charge_for_outputs(VIDEO, values, OutputUsage(video_frames=240), held) == 2
    # 50 s made (1,200 frames): 4.8 -> 5, below the hold of 6.
    assert charge_for_outputs(VIDEO, values, OutputUsage(video_frames=1200), held) == 5
    # More frames than asked never captures more than was held.
    assert charge_for_outputs(VIDEO, values, OutputUsage(video_frames=99_999), held) == held


def test_images_are_charged_for_the_pixels_made_times_the_steps_asked() -> None:
    values = {"width": 1024, "height": 1024, "steps": 50}
    held = estimate_rcc(IMAGE, values)
    smaller = OutputUsage(images=[(512, 512)])  # the backend made a smaller image
    assert charge_for_outputs(IMAGE, values, smaller, held) == 2  # 0.262 x 50 x 0.1 = 1.31
    assert charge_for_outputs(IMAGE, values, OutputUsage(images=[(1024, 1024)]), held) == held


def test_a_rule_must_read_numeric_inputs_and_not_be_negative() -> None:
    assert price_rule_problems(IMAGE, {"width", "height", "steps"}) == []
    problems = price_rule_problems(IMAGE, {"width"})
    assert any("'height'" in p for p in problems) and any("'steps'" in p for p in problems)
    assert price_rule_problems(FixedPrice(rcc=-1), set())
    assert price_rule_problems(PerVideoFrame(seconds=-1, fps=24, millircc=4), set())


@given(
    seconds=st.integers(min_value=0, max_value=600),
    fps=st.integers(min_value=1, max_value=60),
    made=st.integers(min_value=0, max_value=100_000),
    millircc=st.integers(min_value=0, max_value=10_000),
    min_rcc=st.integers(min_value=0, max_value=20),
)
def test_a_capture_is_never_above_the_hold_nor_below_zero(
    seconds: int, fps: int, made: int, millircc: int, min_rcc: int
) -> None:
    rule = PerVideoFrame(seconds="seconds", fps=fps, millircc=millircc, min_rcc=min_rcc)
    held = estimate_rcc(rule, {"seconds": seconds})
    assert held >= min_rcc
    charged = charge_for_outputs(rule, {"seconds": seconds}, OutputUsage(video_frames=made), held)
    assert 0 <= charged <= held
    if made <= seconds * fps:  # made no more than asked: the exact rule, rounded up once
        assert charged == max(min_rcc, -(-made * millircc // 1000))


def test_usage_is_read_from_the_output_files(tmp_path: Path) -> None:
    Image.new("RGB", (640, 480)).save(tmp_path / "still.png")
    frames = [Image.new("RGB", (32, 32), (i * 20, 0, 0)) for i in range(12)]
    frames[0].save(tmp_path / "clip.webp", save_all=True, append_images=frames[1:], duration=40)
    (tmp_path / "notes.txt").write_text("not an image")
    usage = usage_of([tmp_path / "still.png", tmp_path / "clip.webp", tmp_path / "notes.txt"])
    assert usage == OutputUsage(images=[(640, 480)], video_frames=12)
    # A video template held for 60 s at 24 fps, which made 12 frames: the minimum.
    assert charge_for_outputs(VIDEO, {"seconds": 60}, usage, held_rcc=6) == 2
