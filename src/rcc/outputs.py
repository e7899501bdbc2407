"""The outputs store: `$RCC_DATA_DIR/outputs/<job id>/<file>`, served as `/outputs/<job id>/<file>`.

Names come from ComfyUI, so they are reduced to a safe alphabet before they touch the
disk, and every lookup is checked to stay inside the store (no traversal).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_JOB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
MAX_NAME = 160


def safe_name(filename: str, subfolder: str = "") -> str:
    """A file name without directories or odd characters; the subfolder becomes a prefix."""
    joined = f"{subfolder}_{filename}" if subfolder else filename
    name = _UNSAFE.sub("_", joined.replace("/", "_").replace("\\", "_")).lstrip("._-")
    if len(name) > MAX_NAME:
        stem, dot, ext = name.rpartition(".")
        name = (
            f"{stem[: MAX_NAME - len(ext) - 1]}.{ext}" if dot and len(ext) < 12 else name[:MAX_NAME]
        )
    return name or "output"


def attempt_prefix(job_id: str, attempt: int) -> str:
    """What starts the ComfyUI file names of one attempt of a job."""
    return f"{job_id}-a{attempt}_"


def with_attempt_prefix(workflow: dict[str, Any], job_id: str, attempt: int) -> dict[str, Any]:
    """The workflow with every `filename_prefix` starting with the job id and attempt:
    ComfyUI numbers files per prefix, so two attempts (or two jobs) never share a name,
    and a lost attempt's files are told apart from the attempt that counts."""
    prefix = attempt_prefix(job_id, attempt)
    changed: dict[str, Any] = {}
    for node_id, node in workflow.items():
        inputs = node.get("inputs") if isinstance(node, dict) else None
        if isinstance(inputs, dict) and isinstance(inputs.get("filename_prefix"), str):
            node = {
                **node,
                "inputs": {**inputs, "filename_prefix": prefix + inputs["filename_prefix"]},
            }
        changed[node_id] = node
    return changed


def without_attempt_prefix(filename: str, job_id: str) -> str:
    """The file name as the workflow asked for it (the store is per job already)."""
    found = re.match(rf"^{re.escape(job_id)}-a\d+_", filename)
    return filename[found.end() :] if found else filename


def valid_job_id(job_id: str) -> bool:
    return bool(_JOB_ID.match(job_id)) and ".." not in job_id


class OutputStore:
    """Files per job under one root directory."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def job_dir(self, job_id: str) -> Path:
        if not valid_job_id(job_id):
            raise ValueError(f"not a job id: {job_id!r}")
        return self.root / job_id

    def new_path(self, job_id: str, filename: str, subfolder: str, taken: set[str]) -> Path:
        """Where to store a file of this job: a safe name, unique among `taken`."""
        directory = self.job_dir(job_id)
        directory.mkdir(parents=True, exist_ok=True)
        name = safe_name(without_attempt_prefix(filename, job_id), subfolder)
        stem, dot, ext = name.rpartition(".")
        candidate, n = name, 1
        while candidate in taken:
            n += 1
            candidate = f"{stem}-{n}.{ext}" if dot else f"{name}-{n}"
        taken.add(candidate)
        return directory / candidate

    def remove_others(self, job_id: str, keep: set[str]) -> int:
        """Delete the job's files that are not in `keep` (left by an earlier attempt)."""
        directory = self.job_dir(job_id)
        removed = 0
        for path in directory.iterdir() if directory.is_dir() else []:
            if path.is_file() and path.name not in keep:
                path.unlink(missing_ok=True)
                removed += 1
        return removed

    @staticmethod
    def uri(job_id: str, name: str) -> str:
        return f"/outputs/{job_id}/{name}"

    def find(self, job_id: str, name: str) -> Path | None:
        """The stored file for a request, or None (also for any name that is not a plain,
        safe file name of this job: no '..', no slashes, nothing outside the store)."""
        if not valid_job_id(job_id) or name != safe_name(name) or name.startswith("."):
            return None
        path = (self.root / job_id / name).resolve()
        root = self.root.resolve()
        if root not in path.parents or not path.is_file():
            return None
        return path
