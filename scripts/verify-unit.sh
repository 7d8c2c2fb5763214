#!/usr/bin/env bash
# Check deploy/storeolis-bridge.service with `systemd-analyze verify`; used by .ci/run.
#
# verify insists that ExecStart's binary exists. The unit names the production path
# (/opt/storeolis-bridge/.venv/bin/storeolis-bridge); where that is absent, a temporary copy of the unit
# is checked with only that one path replaced by this checkout's console script (.venv, made by
# scripts/install.sh). verify reports bad settings as warnings with exit 0 (a misspelt signal name is
# "ignoring"), so any output fails the check too. Without systemd-analyze: says so and passes.
set -euo pipefail
cd "$(dirname "$0")/.."

unit=deploy/storeolis-bridge.service
prod_bin=/opt/storeolis-bridge/.venv/bin/storeolis-bridge
if ! command -v systemd-analyze >/dev/null 2>&1; then
  echo "systemd-analyze not found: the unit $unit was NOT verified"
  exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
checked="$tmp/storeolis-bridge.service"
if [ -x "$prod_bin" ]; then
  cp "$unit" "$checked"
else
  local_bin="$(pwd)/.venv/bin/storeolis-bridge"
  if [ ! -x "$local_bin" ]; then
    echo "neither $prod_bin nor $local_bin exists: run scripts/install.sh first" >&2
    exit 1
  fi
  sed "s#$prod_bin#$local_bin#g" "$unit" > "$checked"
  echo "(ExecStart checked as $local_bin: $prod_bin is not installed here)"
fi
set +e
output=$(systemd-analyze verify "$checked" 2>&1)
rc=$?
set -e
if [ "$rc" -ne 0 ] || [ -n "$output" ]; then
  echo "$output" | sed "s#$tmp/#deploy/#g"
  echo "systemd-analyze verify: $unit has problems"
  exit 1
fi
echo "systemd-analyze verify: $unit OK"
