#!/usr/bin/env bash
# A real container engine for the ComfyUI operations tests: podman's Docker-compatible
# API service and a tiny local image that plays ComfyUI (no registry is reachable).
#
# Idempotent: installs podman, runc and busybox-static when missing (root, apt), writes
# /etc/containers/containers.conf, starts `podman system service` on $RCC_PODMAN_SOCK
# unless it already answers, and builds the image unless it exists. Safe to run from
# several test workers at once (one runs, the others wait on the lock).
set -euo pipefail

SOCK="${RCC_PODMAN_SOCK:-/run/rcc-podman/podman.sock}"
IMAGE="${RCC_TEST_COMFYUI_IMAGE:-localhost/rcc-fake-comfyui:1}"
RUN_DIR="$(dirname "$SOCK")"
mkdir -p "$RUN_DIR"
exec 9>"$RUN_DIR/setup.lock"
flock 9

if ! command -v podman >/dev/null || ! command -v runc >/dev/null \
    || ! command -v busybox >/dev/null; then
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
        echo "podman, runc and busybox-static are missing; install them as root" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends podman runc busybox-static >/dev/null
fi

# cgroupfs and runc: this machine has no systemd and cgroup v1; no default ulimits
# because the sandbox refuses to raise them.
CONF=/etc/containers/containers.conf
WANT=$'[containers]\ndefault_ulimits = []\n[engine]\ncgroup_manager = "cgroupfs"\nruntime = "runc"'
if [ "$(cat "$CONF" 2>/dev/null)" != "$WANT" ]; then
    mkdir -p /etc/containers
    printf '%s\n' "$WANT" >"$CONF"
fi

answers() { podman --url "unix://$SOCK" version >/dev/null 2>&1; }
if ! answers; then
    rm -f "$SOCK"
    # Its own session, and without the lock's descriptor (it would hold the lock forever).
    setsid podman system service --time=0 "unix://$SOCK" \
        >"$RUN_DIR/service.log" 2>&1 </dev/null 9>&- &
    for _ in $(seq 1 100); do
        answers && break
        sleep 0.2
    done
    answers || { cat "$RUN_DIR/service.log" >&2; echo "podman service did not start" >&2; exit 1; }
fi

if ! podman image exists "$IMAGE"; then
    BUSYBOX="$(command -v busybox)"
    ROOT="$(mktemp -d)"
    trap 'rm -rf "$ROOT"' EXIT
    mkdir -p "$ROOT/bin" "$ROOT/www" "$ROOT/tmp"
    cp "$BUSYBOX" "$ROOT/bin/busybox"
    for tool in sh httpd sleep cat ls; do ln -s busybox "$ROOT/bin/$tool"; done
    # The two answers the status endpoint reads, in the shapes a real ComfyUI sends.
    cat >"$ROOT/www/system_stats" <<'JSON'
{"system": {"os": "posix", "ram_total": 25276502016, "ram_free": 24386527232, "comfyui_version": "0.3.64", "python_version": "3.11.7", "pytorch_version": "2.13.0+cpu", "embedded_python": false, "argv": ["main.py", "--listen", "0.0.0.0", "--port", "8188"]}, "devices": [{"name": "cpu", "type": "cpu", "index": null, "vram_total": 25276502016, "vram_free": 24386527232, "torch_vram_total": 25276502016, "torch_vram_free": 24386527232}]}
JSON
    printf '%s\n' '{"queue_running": [], "queue_pending": []}' >"$ROOT/www/queue"
    # PID 1 ignores SIGTERM unless it traps it: a trap makes `stop` quick.
    cat >"$ROOT/bin/fake-comfyui" <<'SH'
#!/bin/sh
trap 'exit 0' TERM INT
httpd -f -p 8188 -h /www &
wait
SH
    chmod +x "$ROOT/bin/fake-comfyui"
    tar -C "$ROOT" -cf "$ROOT.tar" .
    podman import --change 'CMD ["/bin/fake-comfyui"]' --change 'EXPOSE 8188' \
        "$ROOT.tar" "$IMAGE" >/dev/null
    rm -f "$ROOT.tar"
fi
echo "podman service at unix://$SOCK; image $IMAGE"
