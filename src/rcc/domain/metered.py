"""Price rules: what a template's job costs, from its inputs and from what it produced.

Money is whole RCC; rates are in milli-RCC so a rule can charge 0.25 RCC per megapixel.
Arithmetic is exact (Fraction) and rounds up once, at the end. A rule's factor is either
a constant or the name of a numeric input of the template.

- `fixed`: `{rule: "fixed", rcc}` — the default, as in version 1.
- `per_megapixel_step`: `{rule, width, height, steps?, batch?, millircc, min_rcc}` —
  millircc per megapixel per step (per image of a batch), at least `min_rcc`.
- `per_video_frame`: `{rule, seconds, fps, millircc, min_rcc}` — millircc per frame
  (seconds x fps frames), at least `min_rcc`.

The estimate (from the inputs) is what a job holds at creation; `charge_for_outputs`
is what it captures on success (from what the outputs say ran), never above the hold.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

import msgspec

Factor = int | float | str  # a constant, or the name of an integer/number input
MAX_PRICE_RCC = 1_000_000  # one job never holds more, whatever the inputs say


class FixedPrice(msgspec.Struct, frozen=True, kw_only=True, tag="fixed", tag_field="rule"):
    rcc: int


class PerMegapixelStep(
    msgspec.Struct, frozen=True, kw_only=True, tag="per_megapixel_step", tag_field="rule"
):
    width: Factor
    height: Factor
    steps: Factor = 1
    batch: Factor = 1
    millircc: int  # per megapixel per step
    min_rcc: int = 1


class PerVideoFrame(
    msgspec.Struct, frozen=True, kw_only=True, tag="per_video_frame", tag_field="rule"
):
    seconds: Factor
    fps: Factor
    millircc: int  # per frame
    min_rcc: int = 1


PriceRule = FixedPrice | PerMegapixelStep | PerVideoFrame


class OutputUsage(msgspec.Struct, frozen=True, kw_only=True):
    """What a finished job's outputs say it produced: each image's size, and the frames
    of its videos (read from the files the adapter downloaded)."""

    images: list[tuple[int, int]] = []
    video_frames: int = 0


def _factors(rule: PriceRule) -> list[Factor]:
    match rule:
        case FixedPrice():
            return []
        case PerMegapixelStep():
            return [rule.width, rule.height, rule.steps, rule.batch]
        case PerVideoFrame():
            return [rule.seconds, rule.fps]


def input_factors(rule: PriceRule) -> set[str]:
    """The names of the inputs this rule reads."""
    return {f for f in _factors(rule) if isinstance(f, str)}


def price_rule_problems(rule: PriceRule, numeric_inputs: set[str]) -> list[str]:
    """Why this rule cannot price the template (empty when it can)."""
    problems = [
        f"price: {f!r} is not an integer or number input of the template"
        for f in _factors(rule)
        if isinstance(f, str) and f not in numeric_inputs
    ]
    problems += [f"price: {f!r} must not be negative" for f in _factors(rule) if _neg(f)]
    if isinstance(rule, FixedPrice) and not 0 <= rule.rcc <= MAX_PRICE_RCC:
        problems.append(f"price: rcc must be between 0 and {MAX_PRICE_RCC}")
    if isinstance(rule, PerMegapixelStep | PerVideoFrame) and min(rule.millircc, rule.min_rcc) < 0:
        problems.append("price: millircc and min_rcc must not be negative")
    return problems


def _neg(factor: Factor) -> bool:
    return not isinstance(factor, str) and factor < 0


def _value(factor: Factor, values: dict[str, Any]) -> Fraction:
    raw = values.get(factor, 0) if isinstance(factor, str) else factor
    return Fraction(raw)


def _rcc(milli: Fraction, min_rcc: int) -> int:
    """Whole RCC from milli-RCC, rounded up, at least the minimum, at most the cap."""
    return min(MAX_PRICE_RCC, max(min_rcc, math.ceil(milli / 1000)))


def estimate_rcc(rule: PriceRule, values: dict[str, Any]) -> int:
    """What a job with these input values holds at creation."""
    match rule:
        case FixedPrice():
            return rule.rcc
        case PerMegapixelStep():
            w, h = _value(rule.width, values), _value(rule.height, values)
            units = w * h / 1_000_000 * _value(rule.steps, values) * _value(rule.batch, values)
            return _rcc(units * rule.millircc, rule.min_rcc)
        case PerVideoFrame():
            frames = _value(rule.seconds, values) * _value(rule.fps, values)
            return _rcc(frames * rule.millircc, rule.min_rcc)


def charge_for_outputs(
    rule: PriceRule, values: dict[str, Any], usage: OutputUsage, held_rcc: int
) -> int:
    """What a succeeded job captures: the rule applied to what its outputs show was
    produced (pixels of the images made x the steps asked; frames of video made), at
    least the rule's minimum and never more than was held. A fixed price captures the
    whole hold."""
    match rule:
        case FixedPrice():
            charged = held_rcc
        case PerMegapixelStep():
            pixels = sum((Fraction(w) * h for w, h in usage.images), Fraction(0))
            units = pixels / 1_000_000 * _value(rule.steps, values)
            charged = _rcc(units * rule.millircc, rule.min_rcc)
        case PerVideoFrame():
            charged = _rcc(Fraction(usage.video_frames) * rule.millircc, rule.min_rcc)
    return max(0, min(charged, held_rcc))
