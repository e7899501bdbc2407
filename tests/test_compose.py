"""docker-compose.yml says what the service is: real `rcc` commands, documented variables,
no ComfyUI port on the host, and a healthcheck and restart policy on every long-running
service. (No container engine runs here; the file itself is what is checked.)"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from typing import Any

import pytest
import yaml

from rcc.cli import build_parser
from tests.conftest import REPO

COMPOSE = REPO / "docker-compose.yml"
# ${VAR}, ${VAR:-default}, ${VAR:?error}...; `$${...}` is an escaped dollar, not a variable.
VARIABLE = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(?:[:]?[-?+][^}]*)?\}")


def _compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def _services() -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = _compose()["services"]
    return services


def _argv(command: str | list[str]) -> list[str]:
    return shlex.split(command) if isinstance(command, str) else [str(c) for c in command]


def _is_rcc(service: dict[str, Any]) -> bool:
    return service.get("build") == "." or str(service.get("image", "")).startswith("${RCC_IMAGE")


def _one_shot(services: dict[str, dict[str, Any]]) -> set[str]:
    """Services others wait for to *finish* (service_completed_successfully)."""
    return {
        name
        for service in services.values()
        for name, condition in (service.get("depends_on") or {}).items()
        if isinstance(condition, dict)
        and condition.get("condition") == "service_completed_successfully"
    }


def _parses(argv: list[str]) -> bool:
    try:
        build_parser().parse_args(argv)
    except SystemExit:
        return False
    return True


def test_the_deployment_has_every_part() -> None:
    assert set(_services()) >= {"postgres", "migrate", "portal", "projector", "adapter", "comfyui"}


@pytest.mark.parametrize("name", sorted(n for n, s in _services().items() if _is_rcc(s)))
def test_every_rcc_command_is_a_real_subcommand(name: str) -> None:
    service = _services()[name]
    argv = _argv(service["command"])
    assert argv[0] == "rcc", f"{name}: {argv}"
    assert _parses(argv[1:]), f"{name}: `{' '.join(argv)}` is not an rcc command"
    test = (service.get("healthcheck") or {}).get("test") or []
    if test[1:2] == ["rcc"]:  # ["CMD", "rcc", ...]
        assert _parses(test[2:]), f"{name}: healthcheck {test} is not an rcc command"


def test_the_parts_run_as_their_own_processes() -> None:
    commands = {n: _argv(s["command"])[1] for n, s in _services().items() if _is_rcc(s)}
    assert commands == {
        "migrate": "migrate",
        "portal": "portal",
        "projector": "projector",
        "adapter": "adapter",
    }


def test_every_variable_is_documented_in_env_example() -> None:
    documented = {
        line.split("=", 1)[0].strip()
        for line in (REPO / ".env.example").read_text().splitlines()
        if "=" in line and not line.lstrip().startswith("#")
    }
    used = set(VARIABLE.findall(COMPOSE.read_text()))
    assert used, "the pattern finds the ${VAR} references"
    assert used <= documented, f"undocumented in .env.example: {sorted(used - documented)}"


def test_comfyui_publishes_no_port_and_gets_a_gpu() -> None:
    comfyui = _services()["comfyui"]
    assert "ports" not in comfyui, "ComfyUI must not be reachable from outside the host"
    assert comfyui.get("network_mode") != "host"
    devices = comfyui["deploy"]["resources"]["reservations"]["devices"]
    assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] for d in devices)
    mounts = {str(v).split(":")[1] for v in comfyui["volumes"]}
    assert {"/opt/ComfyUI/models", "/opt/ComfyUI/output"} <= mounts
    assert any(m.endswith("/workflows") for m in mounts)


def test_only_the_portal_is_published() -> None:
    published = {name for name, service in _services().items() if service.get("ports")}
    assert published == {"portal"}


def test_models_and_outputs_are_shared_where_they_must_be() -> None:
    services = _services()

    def volumes(name: str) -> set[str]:
        return {str(v) for v in services[name].get("volumes", [])}

    assert "models:/data/models" in volumes("portal")  # /admin/models installs here
    assert "models:/opt/ComfyUI/models" in volumes("comfyui")  # and ComfyUI reads them
    assert "outputs:/data/outputs" in volumes("adapter") & volumes("portal")


def test_long_running_services_have_a_healthcheck_and_a_restart_policy() -> None:
    services = _services()
    one_shot = _one_shot(services)
    assert one_shot == {"migrate"}
    for name, service in services.items():
        if name in one_shot:
            assert service.get("restart") in ("no", "on-failure"), name
            continue
        assert service.get("restart") in ("always", "unless-stopped", "on-failure"), name
        test = (service.get("healthcheck") or {}).get("test")
        assert test and test[0] in ("CMD", "CMD-SHELL"), f"{name} has no healthcheck"


def test_the_workers_wait_for_the_migration_and_the_migration_for_postgres() -> None:
    services = _services()
    for name in ("portal", "projector", "adapter"):
        assert services[name]["depends_on"]["migrate"]["condition"] == (
            "service_completed_successfully"
        )
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_the_image_installs_with_the_pinned_constraints() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    assert dockerfile.startswith("#") and "FROM python:3.11-slim" in dockerfile
    assert "-c constraints.txt" in dockerfile
    ignored = (REPO / ".dockerignore").read_text().split()
    assert {".venv", ".rcc", ".env"} <= set(ignored)


def _comfyui_dockerfile() -> str:
    build = _services()["comfyui"]["build"]
    context = REPO / (build["context"] if isinstance(build, dict) else build)
    assert context.is_dir(), f"compose builds comfyui from {context}, which is missing"
    name = build.get("dockerfile", "Dockerfile") if isinstance(build, dict) else "Dockerfile"
    return (context / name).read_text()


def _build_args(dockerfile: str) -> dict[str, str]:
    return dict(re.findall(r"^ARG (\w+)=(\S+)$", dockerfile, re.MULTILINE))


def test_compose_builds_the_comfyui_image_it_names() -> None:
    comfyui = _services()["comfyui"]
    assert "rcc-comfyui" in comfyui["image"]  # what `build` tags, and what runs
    dockerfile = _comfyui_dockerfile()
    assert dockerfile.startswith("#")
    assert re.search(r'^CMD \["python3", "main.py", "--listen", "0.0.0.0", "--port", "8188"\]$',
                     dockerfile, re.MULTILINE)  # fmt: skip
    assert "EXPOSE 8188" in dockerfile


def test_the_comfyui_image_pins_every_version() -> None:
    dockerfile = _comfyui_dockerfile()
    args = _build_args(dockerfile)
    # The CUDA base image by an exact tag (never latest), and FROM uses it.
    base = args["CUDA_IMAGE"]
    assert re.fullmatch(r"nvidia/cuda:\d+\.\d+\.\d+-[a-z0-9-]*runtime[a-z0-9.-]*", base), base
    assert re.search(r"^FROM \$\{CUDA_IMAGE\}$", dockerfile, re.MULTILINE)
    # ComfyUI by release tag, the version the fake image in tests/podman reports too.
    assert args["COMFYUI_VERSION"] == "0.3.64"
    assert '--branch "v${COMFYUI_VERSION}"' in dockerfile
    fake = (REPO / "tests" / "podman" / "setup.sh").read_text()
    assert f'"comfyui_version": "{args["COMFYUI_VERSION"]}"' in fake
    for package in ("TORCH", "TORCHVISION", "TORCHAUDIO"):
        assert re.fullmatch(r"\d+\.\d+\.\d+", args[f"{package}_VERSION"]), package
        assert f"=={{{package}_VERSION}}" in dockerfile.replace("${", "{"), package
    assert "pip install -r requirements.txt" in dockerfile


def test_the_comfyui_image_runs_as_a_user() -> None:
    users = re.findall(r"^USER (\S+)$", _comfyui_dockerfile(), re.MULTILINE)
    assert users and users[-1] not in ("root", "0"), users


def test_the_variable_pattern_reads_every_form() -> None:
    text = "${A} ${B:-x} ${C:?say it} ${D-y} $${ESCAPED} $$E"
    assert VARIABLE.findall(text) == ["A", "B", "C", "D"]


def test_the_worker_healthchecks_answer_from_the_database(cli_env: dict[str, str]) -> None:
    # A fresh database: nothing to project (healthy), no adapter heartbeat (unhealthy).
    def health(part: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "rcc.cli", "health", part, "--max-age", "30"],
            env=cli_env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    projector = health("projector")
    assert projector.returncode == 0 and projector.stdout.startswith("healthy"), projector
    adapter = health("adapter")
    assert adapter.returncode == 1 and adapter.stdout.startswith("unhealthy"), adapter
