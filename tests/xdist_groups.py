"""Make `--dist loadgroup` honour `xdist_group` marks again (loaded with `-p` from pyproject).

pytest-xdist 3.8 groups tests by appending `@group` to each item's node id, but it
writes `item._nodeid`, which pytest 9.2 no longer reads: pytest keeps the id in
`item._id` (a structured NodeId). The suffix never reaches the controller, every
group is spread over all workers, and the tests that share one expensive set-up per
worker (the OpenID provider's `npm ci`, the browser's service, the fault suite) race
each other. This hook writes the suffix where pytest reads it. It stands aside once
xdist's own suffix shows up in the id, so upgrading either package cannot double it.
"""

from __future__ import annotations

import pytest


def group_suffix(item: pytest.Item) -> str | None:
    """The `@name` suffix xdist's loadgroup scheduler expects, or None for ungrouped tests."""
    names = {
        str(mark.args[0] if mark.args else mark.kwargs.get("name", "default"))
        for mark in item.iter_markers("xdist_group")
    }
    return "@" + "_".join(sorted(names)) if names else None


@pytest.hookimpl(trylast=True)  # after conftest hooks that rewrite node ids themselves
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Suffix grouped items' node ids with their group when running `--dist loadgroup`."""
    # xdist sets `loadgroup` on its workers (their own `dist` is "no"): only they need ids.
    if not getattr(config.option, "loadgroup", False):
        return
    for item in items:
        suffix = group_suffix(item)
        if suffix is None or "@" in item.nodeid:
            continue
        # NodeId.parse keeps the exact string, so the suffixed id round-trips unchanged.
        item._id = type(item._id).parse(item.nodeid + suffix)  # type: ignore[attr-defined]
