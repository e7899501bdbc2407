"""Workflow templates: a published ComfyUI workflow with named inputs and a price rule.

Pure: what a template declares, whether a declaration is sound (every input bound to a
node and field that exist), and how a user's input values become a workflow. Values are
checked here, by the template's own bounds, before anything is reserved.
"""

from __future__ import annotations

import copy
import math
import secrets
from typing import Any, Literal

import msgspec

from rcc.domain.backends import TAG
from rcc.domain.events import TemplatePublished, TemplateRevised, TemplateUnpublished
from rcc.domain.metered import PriceRule, price_rule_problems
from rcc.domain.workflow import workflow_problem

InputKind = Literal["text", "integer", "number", "seed", "choice", "image", "video"]
UPLOAD_KINDS = ("image", "video")
SEED_MAX = 2**53 - 1  # JSON-safe in every client; ComfyUI takes up to 2**64 - 1
TEXT_MAX_LENGTH = 10_000  # a text input without its own max_length
NUMBER_LIMIT = 2**53  # integer and number inputs stay exact in every JSON client


class TemplateInput(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One named input, bound to one field of one node of the workflow."""

    name: str
    kind: InputKind
    node: str
    field: str
    label: str | None = None
    default: Any = None
    min: float | None = None
    max: float | None = None
    step: float | None = None
    choices: list[str] | None = None
    max_length: int | None = None


class TemplateSpec(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What an admin publishes; each new version is a whole new spec."""

    name: str
    description: str = ""
    job_type: Literal["IMAGE_TASK", "VIDEO_TASK"]
    workflow: dict[str, Any]
    inputs: list[TemplateInput] = []
    price: PriceRule
    cover: str | None = None  # an image URL shown in the gallery
    # Backend tags its jobs need (issue 16's, e.g. "video"): recorded on each job, which
    # goes only to a backend carrying all of them (with its job type's tags).
    requires_tags: list[str] = []


class TemplateState(msgspec.Struct, frozen=True, kw_only=True):
    """A template stream folded: its current version and whether it is published."""

    template_id: str = ""
    version: int = 0
    published: bool = False


def _input_problem(spec: TemplateSpec, item: TemplateInput) -> str | None:
    node = spec.workflow.get(item.node)
    if not isinstance(node, dict):
        return f"input {item.name!r}: the workflow has no node {item.node!r}"
    if item.field not in node.get("inputs", {}):
        return f"input {item.name!r}: node {item.node!r} has no field {item.field!r}"
    if item.kind == "choice" and not item.choices:
        return f"input {item.name!r}: a choice needs a non-empty choices list"
    if item.min is not None and item.max is not None and item.min > item.max:
        return f"input {item.name!r}: min is above max"
    if item.step is not None and item.step <= 0:
        return f"input {item.name!r}: step must be positive"
    if item.default is not None and item.kind not in UPLOAD_KINDS:
        refused = value_problem(item, item.default)
        if refused is not None:
            return f"input {item.name!r}: default {refused}"
    return None


def spec_problems(spec: TemplateSpec) -> list[str]:
    """Why this template cannot be published (empty when it can)."""
    if shape := workflow_problem(spec.workflow):
        return [shape]
    problems: list[str] = []
    names = [i.name for i in spec.inputs]
    if len(set(names)) != len(names):
        problems.append("input names must be unique")
    bound = [(i.node, i.field) for i in spec.inputs]
    if len(set(bound)) != len(bound):
        problems.append("two inputs are bound to the same node field")
    problems += [p for i in spec.inputs if (p := _input_problem(spec, i))]
    problems += [
        f"requires_tags: {tag!r} is not a tag (lower case letters, digits, _ . -; 32 at most)"
        for tag in spec.requires_tags
        if not TAG.match(tag)
    ]
    numeric = {i.name for i in spec.inputs if i.kind in ("integer", "number")}
    problems += price_rule_problems(spec.price, numeric)
    return problems


def _number_problem(item: TemplateInput, value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "must be a number"
    if item.kind == "integer" and not isinstance(value, int):
        return "must be a whole number"
    if isinstance(value, float) and not math.isfinite(value):
        return "must be finite"
    if abs(value) > NUMBER_LIMIT:  # also keeps float arithmetic below from overflowing
        return f"must be between {-NUMBER_LIMIT} and {NUMBER_LIMIT}"
    if item.min is not None and value < item.min:
        return f"must be at least {item.min:g}"
    if item.max is not None and value > item.max:
        return f"must be at most {item.max:g}"
    if item.step is not None:
        base = item.min or 0
        steps = (value - base) / item.step
        if abs(steps - round(steps)) > 1e-9:
            return f"must be a multiple of {item.step:g} from {base:g}"
    return None


def value_problem(item: TemplateInput, value: Any) -> str | None:
    """Why `value` is not acceptable for this input, or None (upload ids are checked
    by the caller, which knows who owns which upload)."""
    match item.kind:
        case "text":
            if not isinstance(value, str):
                return "must be text"
            limit = item.max_length or TEXT_MAX_LENGTH
            return f"is longer than {limit} characters" if len(value) > limit else None
        case "integer" | "number":
            return _number_problem(item, value)
        case "seed":
            if isinstance(value, bool) or not isinstance(value, int):
                return "must be a whole number"
            return None if 0 <= value <= SEED_MAX else f"must be between 0 and {SEED_MAX}"
        case "choice":
            return None if value in (item.choices or []) else f"must be one of {item.choices}"
        case _:
            return None if isinstance(value, str) and value else "must be an upload id"


class Bound(msgspec.Struct, frozen=True, kw_only=True):
    """A template's workflow with the inputs filled in, and the values that were used."""

    workflow: dict[str, Any]
    values: dict[str, Any]


def resolve_values(
    inputs: list[TemplateInput], given: dict[str, Any], seed_source: int | None = None
) -> tuple[dict[str, Any], dict[str, str]]:
    """Every input's value (given, else its default; an empty seed drawn at random, or
    from `seed_source` so a retried request binds the same seed), and `{input name:
    why}` for the ones that cannot be used."""
    errors: dict[str, str] = {}
    values: dict[str, Any] = {}
    for name in sorted(set(given) - {i.name for i in inputs}):
        errors[name] = "is not an input of this template"
    for item in inputs:
        value = given.get(item.name, item.default)
        if item.kind == "seed" and value in (None, ""):
            value = seed_source if seed_source is not None else secrets.randbelow(SEED_MAX)
        if value is None:
            errors[item.name] = "is required"
        elif problem := value_problem(item, value):
            errors[item.name] = problem
        else:
            values[item.name] = value
    return values, errors


def bind(spec: TemplateSpec, values: dict[str, Any], upload_names: dict[str, str]) -> Bound:
    """The workflow with each value put into its node field; an upload input gets the
    file name the backend will know it by (`upload_names`, by input name)."""
    workflow = copy.deepcopy(spec.workflow)
    for item in spec.inputs:
        value = upload_names.get(item.name, values[item.name])
        workflow[item.node]["inputs"][item.field] = value
    return Bound(workflow=workflow, values=values)


def evolve(state: TemplateState, event: object) -> TemplateState:
    """Fold one template event (published, revised, unpublished) into the state."""
    match event:
        case TemplatePublished() | TemplateRevised():
            return TemplateState(
                template_id=event.template_id, version=event.version, published=True
            )
        case TemplateUnpublished():
            return msgspec.structs.replace(state, published=False)
    return state
