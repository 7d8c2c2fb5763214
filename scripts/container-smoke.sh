#!/usr/bin/env bash
# Container smoke test with podman, as root, no Docker engine needed (README "Production"):
#   1. a local base image: a minimal Debian bookworm (debootstrap) with python3 (3.11) and python3-venv,
#      imported once and kept (tag $BASE_TAG); or any base given as BASE_IMAGE=... (then no debootstrap);
#   2. the image built from ./Dockerfile on that base (--build-arg BASE_IMAGE);
#   3. in it, without a network: `--help`; the pymorphy3 dictionaries load; `migrate` on SQLite; `check`
#      against servers that refuse connections (one FAIL line per unreachable server, exit 1);
#   4. `run` with HEALTH_PORT: the HEALTHCHECK asks /health (503 here: Telegram is unreachable), and
#      `podman stop` (SIGTERM to python, PID 1) ends it gracefully with exit code 0 before the grace period.
# Not part of .ci/run: it needs root, podman, debootstrap and the network (Debian mirror, PyPI for the build).
#   apt-get install podman buildah debootstrap; scripts/container-smoke.sh
# Settings: MIRROR (Debian mirror), SMOKE_DIR (rootfs tarball kept there), KEEP=1 keeps the test image,
# SKIP_BUILD=1 tests the image kept by an earlier KEEP=1 run. The defaults work inside another container
# (where this was written): PODMAN_OPTS: the vfs storage driver, cgroupfs, and runc when installed (crun
# refuses a hybrid cgroup v1/v2 host: "cgroups in hybrid mode not supported"); RUN_OPTS: lower ulimits than
# podman's defaults (raising them fails: "setrlimit RLIMIT_NOFILE: Operation not permitted"); the build
# uses chroot isolation (no OCI runtime for RUN steps). CA_BUNDLE (default: $PIP_CERT): a CA bundle for a
# TLS-intercepting proxy, bind-mounted for pip during the build only (never stored in the image).
set -euo pipefail
cd "$(dirname "$0")/.."

MIRROR=${MIRROR:-http://deb.debian.org/debian}
SMOKE_DIR=${SMOKE_DIR:-/var/tmp/storeolis-smoke}
BASE_TAG=localhost/storeolis-smoke-base:bookworm
IMAGE=localhost/storeolis-bridge:smoke
default_opts="--storage-driver vfs --cgroup-manager cgroupfs"
if command -v runc >/dev/null 2>&1; then default_opts+=" --runtime runc"; fi
read -r -a PODMAN_OPTS <<< "${PODMAN_OPTS:-$default_opts}"
read -r -a RUN_OPTS <<< "${RUN_OPTS:---ulimit nofile=1024:1024 --ulimit nproc=1024:1024}"
CA_BUNDLE=${CA_BUNDLE:-${PIP_CERT:-}}
pm() { podman "${PODMAN_OPTS[@]}" "$@"; }
run() { pm run --rm --network none --no-healthcheck "${RUN_OPTS[@]}" "$@"; }

fail() { echo "container smoke: FAIL: $*" >&2; exit 1; }
step() { echo "== container smoke: $*"; }

work=$(mktemp -d)
container=storeolis-smoke-$$
cleanup() {
  pm rm -f "$container" >/dev/null 2>&1 || true
  [ "${KEEP:-0}" = 1 ] || pm rmi -f "$IMAGE" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

# 1. The base image.
if [ -n "${BASE_IMAGE:-}" ]; then
  base=$BASE_IMAGE
elif pm image exists "$BASE_TAG"; then
  base=$BASE_TAG
else
  step "base image: debootstrap bookworm (python3, python3-venv) into $SMOKE_DIR"
  mkdir -p "$SMOKE_DIR"
  tarball="$SMOKE_DIR/bookworm-python3.tar"
  if [ ! -s "$tarball" ]; then
    rootfs="$SMOKE_DIR/rootfs"
    rm -rf "$rootfs"
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates,tzdata \
      bookworm "$rootfs" "$MIRROR" > "$SMOKE_DIR/debootstrap.log" 2>&1 \
      || fail "debootstrap (log: $SMOKE_DIR/debootstrap.log)"
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    tar -C "$rootfs" -cf "$tarball" .
    rm -rf "$rootfs"
  fi
  pm import --change 'CMD ["/bin/bash"]' "$tarball" "$BASE_TAG" >/dev/null
  base=$BASE_TAG
fi
step "base $base: $(run "$base" python3 --version)"

# 2. The image. Docker format: the OCI format has no HEALTHCHECK. Host network for pip during the build.
build_opts=(--format docker --network host --isolation chroot --build-arg BASE_IMAGE="$base")
if [ -n "$CA_BUNDLE" ]; then
  printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' > "$work/pip.conf"
  build_opts+=(-v "$CA_BUNDLE:/etc/ssl/certs/ca-certificates.crt:ro" -v "$work/pip.conf:/etc/pip.conf:ro")
fi
if [ "${SKIP_BUILD:-0}" = 1 ] && pm image exists "$IMAGE"; then
  step "using the existing $IMAGE (SKIP_BUILD=1)"
else
  step "build $IMAGE"
  start=$(date +%s)
  pm build "${build_opts[@]}" -t "$IMAGE" . > "$work/build.log" 2>&1 || { tail -30 "$work/build.log"; fail "build"; }
  step "built in $(( $(date +%s) - start )) s"
fi
step "image size $(pm image inspect --format '{{.Size}}' "$IMAGE") bytes"

# 3. Commands, offline (--network none: nothing may be downloaded at start).
step "--help"
help=$(run "$IMAGE" --help) || fail "--help exited $?"
grep -q '^usage: storeolis-bridge' <<< "$help" || fail "--help printed: $help"
[ "$(run --entrypoint id "$IMAGE" -u)" = 10001 ] || fail "the image does not run as uid 10001"

step "pymorphy3 dictionaries from the image"
run --entrypoint python "$IMAGE" -c "import pymorphy3; print(pymorphy3.MorphAnalyzer(lang='ru').parse('заявки')[0].normal_form)" \
  | grep -qx 'заявка' || fail "pymorphy3 could not lemmatise offline"

# Settings of an unreachable world: refused connections on 127.0.0.1 (port 9 is closed), SQLite in a volume.
mkdir -p "$work/data" && chown 10001:10001 "$work/data"
env_file="$work/env"
cat > "$env_file" <<'EOF'
TELEGRAM_BOT_TOKEN=123456:smoke-test-token
TELEGRAM_API_URL=http://127.0.0.1:9
STAFF_CHAT_ID=-1009876543210
IMAP_HOST=127.0.0.1
IMAP_PORT=9
IMAP_SECURITY=none
IMAP_USER=support@example.test
IMAP_PASSWORD=smoke
SMTP_HOST=127.0.0.1
SMTP_PORT=9
SMTP_SECURITY=none
SMTP_PASSWORD=smoke
IMAP_HANDLED_FLAG='$StoreolisHandled'
PARSE_WORKERS=1
EOF
vol=(-v "$work/data:/var/lib/storeolis-bridge/data" --env-file "$env_file")

step "migrate (SQLite in ./data)"
run "${vol[@]}" "$IMAGE" migrate > "$work/migrate.log" 2>&1 || { cat "$work/migrate.log"; fail "migrate"; }

step "check against unreachable servers (expect exit 1, one line per check)"
set +e
run "${vol[@]}" "$IMAGE" check > "$work/check.log" 2> "$work/check.err"
rc=$?
set -e
cat "$work/check.log" "$work/check.err"
[ "$rc" -eq 1 ] || fail "check exited $rc, expected 1"
for expected in '^database +OK ' '^imap +FAIL ' '^smtp +FAIL ' '^telegram +FAIL ' '^templates +OK '; do
  grep -Eq "$expected" "$work/check.log" || fail "check: no line matching /$expected/"
done
[ "$(wc -l < "$work/check.log")" -eq 5 ] || fail "check printed more than its five lines"

# 4. run: healthcheck, then SIGTERM.
step "run with HEALTH_PORT=8080, then podman stop (SIGTERM)"
# Without systemd podman cannot schedule the healthcheck ("unable to get systemd connection"): it is run
# by hand below, which is what the timer would do.
pm run -d --name "$container" --network none "${RUN_OPTS[@]}" "${vol[@]}" -e HEALTH_PORT=8080 "$IMAGE" \
  > /dev/null 2> "$work/run.err" || { cat "$work/run.err"; fail "podman run -d"; }
for _ in $(seq 60); do
  pm logs "$container" 2>&1 | grep -q 'health endpoint on' && break
  sleep 1
done
pm logs "$container" 2>&1 | grep -q 'health endpoint on' || { pm logs "$container"; fail "no health endpoint after 60 s"; }
stop_signal=$(pm inspect --format '{{.Config.StopSignal}}' "$container")
case "$stop_signal" in SIGTERM|15) ;; *) fail "the container's stop signal is $stop_signal, not SIGTERM" ;; esac
# Telegram is unreachable, so the telegram-updates component keeps crashing and restarting: /health must
# say 503 and the image's HEALTHCHECK must report unhealthy (a refused connection would mean no endpoint).
health=""
for _ in $(seq 10); do
  if health=$(pm exec "$container" python /opt/storeolis-bridge/deploy/healthcheck.py 2>&1); then
    sleep 1; continue  # caught between a crash and its restart's connect: ask again
  fi
  break
done
echo "healthcheck.py: ${health:0:160}"
grep -q 'HTTP 503' <<< "$health" || fail "the healthcheck did not get /health's 503: $health"
if verdict=$(pm healthcheck run "$container" 2>&1); then fail "HEALTHCHECK passed with Telegram unreachable"; fi
grep -q unhealthy <<< "$verdict" || fail "podman healthcheck run said: $verdict"
echo "HEALTHCHECK: $verdict (as it should with Telegram unreachable)"
start=$(date +%s)
pm stop -t 90 "$container" > /dev/null
stopped_in=$(( $(date +%s) - start ))
code=$(pm inspect --format '{{.State.ExitCode}}' "$container")
pm logs "$container" 2>&1 | tail -3
[ "$code" -eq 0 ] || fail "the bridge exited $code after SIGTERM (137 would be a SIGKILL: no graceful stop)"
step "stopped gracefully in ${stopped_in} s (exit 0)"
echo "container smoke: OK"
