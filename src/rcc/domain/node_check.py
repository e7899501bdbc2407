"""A workflow checked against what a backend says it can run (its GET /object_info),
the way ComfyUI validates a prompt, so a job that would be refused is refused before
anyone pays. Pure: the description is handed in.

Errors are `{node_id: [{field, message}]}`; a problem of the whole prompt (no output
node) is under the node id "prompt".
"""

from __future__ import annotations

import math
from typing import Any

NodeErrors = dict[str, list[dict[str, str]]]
# Fields whose choice is filled in later (an upload the adapter sends to the backend
# before the prompt), so the backend's current file list cannot know it yet.
Deferred = frozenset[tuple[str, str]]


def _is_link(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 2
        and isinstance(value[0], str)
        and isinstance(value[1], int)
    )


def _choices(spec: list[Any]) -> list[Any] | None:
    """A combo's choices: old style `[[a, b], {...}]`, or V3 `["COMBO", {options}]`."""
    if spec and isinstance(spec[0], list):
        return spec[0]
    if spec and spec[0] == "COMBO" and len(spec) > 1 and isinstance(spec[1], dict):
        options = spec[1].get("options")
        return options if isinstance(options, list) else None
    return None


def _looks_like_model(field: str) -> bool:
    """Loader fields (ckpt_name, vae_name, lora_name...) list the model files installed."""
    return field.endswith("_name")


def _value_problem(field: str, spec: list[Any], value: Any) -> str | None:
    kind = spec[0] if spec else None
    config = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
    choices = _choices(spec)
    if choices is not None:
        if value in choices:
            return None
        if _looks_like_model(field):
            return f"unknown model file {value!r}: the backend has {choices[:20]}"
        return f"{value!r} is not one of {choices[:20]}"
    if kind in ("INT", "FLOAT"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"must be a number, got {value!r}"
        if kind == "INT" and not isinstance(value, int):
            return f"must be a whole number, got {value!r}"
        if isinstance(value, float) and not math.isfinite(value):
            return "must be finite"
        if "min" in config and value < config["min"]:
            return f"value {value} is smaller than the min of {config['min']}"
        if "max" in config and value > config["max"]:
            return f"value {value} is bigger than the max of {config['max']}"
    if kind == "STRING" and not isinstance(value, str):
        return f"must be text, got {value!r}"
    if kind == "BOOLEAN" and not isinstance(value, bool):
        return f"must be true or false, got {value!r}"
    return None


def _link_problem(
    workflow: dict[str, Any], info: dict[str, Any], spec: list[Any], link: list[Any]
) -> str | None:
    source = workflow.get(link[0])
    if not isinstance(source, dict):
        return f"linked to node {link[0]!r}, which is not in the workflow"
    outputs = info.get(source.get("class_type", ""), {}).get("output", [])
    if not 0 <= link[1] < len(outputs):
        return f"linked to output {link[1]} of node {link[0]!r}, which has {len(outputs)}"
    wanted, given = spec[0] if spec else "*", outputs[link[1]]
    if isinstance(wanted, str) and wanted not in ("*", given) and given != "*":
        return f"expects {wanted} but node {link[0]!r} gives {given}"
    return None


def _node_errors(
    node_id: str,
    node: dict[str, Any],
    workflow: dict[str, Any],
    info: dict[str, Any],
    deferred: Deferred,
) -> list[dict[str, str]]:
    class_type = node.get("class_type")
    if not isinstance(class_type, str) or not class_type:
        return [{"field": "class_type", "message": "the node has no class_type"}]
    described = info.get(class_type)
    if described is None:
        return [{"field": "class_type", "message": f"unknown node type {class_type!r}"}]
    given = node.get("inputs", {})
    declared = described.get("input", {})
    errors: list[dict[str, str]] = []
    for section in ("required", "optional"):
        for field, spec in (declared.get(section) or {}).items():
            spec = spec if isinstance(spec, list) else [spec]
            if field not in given:
                if section == "required":
                    errors.append({"field": field, "message": "required input missing"})
                continue
            value = given[field]
            if _is_link(value):
                problem = _link_problem(workflow, info, spec, value)
            elif (node_id, field) in deferred:
                problem = None
            else:
                problem = _value_problem(field, spec, value)
            if problem:
                errors.append({"field": field, "message": problem})
    return errors


def check_workflow(
    workflow: dict[str, Any], info: dict[str, Any], deferred: Deferred = frozenset()
) -> NodeErrors:
    """Every problem ComfyUI would refuse the prompt for, by node and field (empty when
    the backend would run it)."""
    found: NodeErrors = {}
    for node_id, node in workflow.items():
        if errors := _node_errors(node_id, node, workflow, info, deferred):
            found[node_id] = errors
    outputs = [
        n
        for n in workflow.values()
        if isinstance(n, dict) and info.get(str(n.get("class_type")), {}).get("output_node")
    ]
    if not outputs and not found:
        found["prompt"] = [{"field": "", "message": "the workflow has no output node"}]
    return found
