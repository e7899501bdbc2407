"""Everything installed in the venv is pinned in constraints.txt, at the installed version.

`make` installs with `-c constraints.txt`, which pins only what it names: a new
transitive dependency (or a direct one left out, as argon2-cffi and prometheus-client
once were) would float to whatever is newest on the day. This compares the
distributions actually installed with the file.
"""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# The project itself (editable) and setuptools, which the interpreter's ensurepip puts
# in every venv (Python 3.12+ leaves it out); neither comes from pip's resolver.
NOT_RESOLVED = {"rcc", "setuptools"}


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pins() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, sep, version = line.partition("==")
            assert sep, f"not an exact pin: {line!r}"
            pins[_canonical(name)] = version.strip()
    return pins


def _installed() -> dict[str, str]:
    found = {_canonical(d.metadata["Name"]): d.version for d in metadata.distributions()}
    return {name: version for name, version in found.items() if name not in NOT_RESOLVED}


def test_every_installed_distribution_is_pinned() -> None:
    pins = _pins()
    unpinned = {name: version for name, version in _installed().items() if name not in pins}
    assert unpinned == {}, f"add to constraints.txt: {unpinned}"


def test_installed_versions_match_their_pins() -> None:
    pins = _pins()
    drifted = {
        name: (pins[name], version)
        for name, version in _installed().items()
        if name in pins and pins[name] != version
    }
    assert drifted == {}, f"(pinned, installed): {drifted}"


def test_the_direct_dependencies_that_once_floated_are_pinned() -> None:
    assert {"argon2-cffi", "argon2-cffi-bindings", "cffi", "prometheus-client"} <= set(_pins())
