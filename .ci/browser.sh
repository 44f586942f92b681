#!/usr/bin/env bash
# Browser tests of the web UI: Debian's Chromium (installed with apt if missing) driven by
# Playwright (PyPI, pinned in crates/cutover/tests/browser/requirements.txt; never
# `playwright install`), against a server started on a fresh data directory and a free
# loopback port. Screenshots of every screen go to target/screenshots/.
#
# Usage: .ci/browser.sh [pytest args...]
# Env: CUTOVER_BROWSER_PROFILE=release|debug (default release, as CI builds it; debug locally).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x /usr/bin/chromium ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi

venv=.ci/browser-venv
requirements=crates/cutover/tests/browser/requirements.txt
if [ ! -x "$venv/bin/pytest" ] || ! "$venv/bin/pip" freeze 2>/dev/null | grep -qxF -f "$requirements"; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
fi

profile="${CUTOVER_BROWSER_PROFILE:-release}"
if [ "$profile" = release ]; then
    cargo build --release --locked -p cutover
else
    cargo build --locked -p cutover
fi
binary="${CARGO_TARGET_DIR:-target}/$profile/cutover"

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
work=$(mktemp -d)
server_pid=""
cleanup() {
    if [ -n "$server_pid" ]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

# A provisioner for the pools pages: every instance starts at once.
cat >"$work/cutover.toml" <<'TOML'
[executors.provision]
program = ["sh", "-c", "exit 0"]
TOML
CUTOVER_LOG=warn "$binary" serve --config "$work/cutover.toml" --data-dir "$work" --listen "127.0.0.1:$port" \
    >"$work/server.log" 2>&1 &
server_pid=$!
base="http://127.0.0.1:$port"
for _ in $(seq 1 100); do
    curl -sf "$base/readyz" >/dev/null 2>&1 && break
    sleep 0.1
done
curl -sf "$base/readyz" >/dev/null || { cat "$work/server.log" >&2; echo "the server did not start" >&2; exit 1; }

mkdir -p target/screenshots
status=0
CUTOVER_URL="$base" CUTOVER_OWNER_TOKEN="$(cat "$work/cutover-owner-token")" CUTOVER_BINARY="$(realpath "$binary")" \
    CUTOVER_SCREENSHOTS="$PWD/target/screenshots" \
    "$venv/bin/pytest" -q -p no:cacheprovider --browser chromium crates/cutover/tests/browser "$@" || status=$?
if [ "$status" -ne 0 ]; then
    echo "browser tests failed; server log:" >&2
    tail -n 50 "$work/server.log" >&2
fi
exit "$status"
