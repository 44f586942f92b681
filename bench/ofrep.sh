#!/usr/bin/env bash
# Resolve benchmark: OFREP single-flag evaluations over loopback against `cutover serve`
# (SQLite, 1,000 artifacts pinned), next to a minimal hyper server with a fixed body measured in
# the same run. Load generator: oha (`cargo install oha`). Prints medians of RUNS runs.
#
#   bench/ofrep.sh                 # RUNS=3 DURATION=10s CONNECTIONS=64 RATE=5000
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}; DURATION=${DURATION:-10s}; CONNECTIONS=${CONNECTIONS:-64}; RATE=${RATE:-5000}
PORT=${PORT:-7398}; FIXED_PORT=${FIXED_PORT:-7399}; ARTIFACTS=${ARTIFACTS:-1000}
command -v oha >/dev/null || { echo "needs oha: cargo install oha" >&2; exit 1; }

cargo build --release -q -p cutover
cargo build --release -q -p cutover-server --example fixed_body
data=$(mktemp -d)
cleanup() { kill "${server:-}" "${fixed:-}" 2>/dev/null || true; rm -rf "$data"; }
trap cleanup EXIT
CUTOVER_LOG=warn ./target/release/cutover serve --listen "127.0.0.1:$PORT" --data-dir "$data" >/dev/null &
server=$!
./target/release/examples/fixed_body "127.0.0.1:$FIXED_PORT" &
fixed=$!
for _ in $(seq 1 50); do curl -fs "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.2; done
curl -fs "http://127.0.0.1:$PORT/healthz" >/dev/null || { echo "cutover serve did not start" >&2; exit 1; }
owner=$(cat "$data/cutover-owner-token")
api() { curl -fsS -X "$1" "http://127.0.0.1:$PORT$2" -H "Authorization: Bearer $owner" -H 'Content-Type: application/json' ${3:+-d "$3"}; }

echo "seeding $ARTIFACTS artifacts pinned to production..." >&2
api POST /api/v1/environments '{"name":"production"}' >/dev/null
for i in $(seq -w 1 "$ARTIFACTS"); do
    api POST /api/v1/artifacts "{\"key\":\"flag-$i\",\"value_type\":\"string\"}" >/dev/null
    api POST "/api/v1/artifacts/flag-$i/versions" "{\"content\":\"value $i\",\"environments\":[\"production\"]}" >/dev/null
done
sdk=$(api POST /api/v1/tokens '{"name":"bench","role":"sdk","environments":["production"]}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["secret"])')
body='{"context":{"targetingKey":"user-42"}}'
single="http://127.0.0.1:$PORT/ofrep/v1/evaluate/flags/flag-0500"
bulk="http://127.0.0.1:$PORT/ofrep/v1/evaluate/flags"
etag=$(curl -fsS -D - -o /dev/null -X POST "$bulk" -H "Authorization: Bearer $sdk" -H 'Content-Type: application/json' -d "$body" | awk -F': ' 'tolower($1)=="etag"{print $2}' | tr -d '\r')

# oha --json: requestsPerSec, latencyPercentiles.p50/p99 (seconds).
measure() { oha --no-tui --output-format json -z "$DURATION" "$@" | python3 bench/oha_summary.py; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
run() { # name, then oha arguments; prints median rps, p50 ms, p99 ms
    local name=$1; shift
    local file; file="$data/$(printf '%s' "$name" | tr -c 'a-z0-9' '_')"
    local out=(); for _ in $(seq 1 "$RUNS"); do out+=("$(measure "$@")"); done
    printf '%s\n' "${out[@]}" > "$file"
    printf '%-36s rps %8s  p50 %6s ms  p99 %6s ms  (success %s)\n' "$name" \
        "$(cut -d' ' -f1 "$file" | median)" "$(cut -d' ' -f2 "$file" | median)" \
        "$(cut -d' ' -f3 "$file" | median)" "$(cut -d' ' -f4 "$file" | median)"
}
post=(-m POST -H "Authorization: Bearer $sdk" -H 'Content-Type: application/json' -d "$body")
echo "machine: $(nproc) cores, $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr); runs: $RUNS x $DURATION"
run "fixed body, saturation"            -c "$CONNECTIONS" "${post[@]}" "http://127.0.0.1:$FIXED_PORT/"
run "ofrep single, saturation"          -c "$CONNECTIONS" "${post[@]}" "$single"
run "fixed body, $RATE/s"               -c 16 -q "$RATE" "${post[@]}" "http://127.0.0.1:$FIXED_PORT/"
run "ofrep single, $RATE/s"             -c 16 -q "$RATE" "${post[@]}" "$single"
run "ofrep bulk 1000 -> 304, saturation" -c "$CONNECTIONS" "${post[@]}" -H "If-None-Match: $etag" "$bulk"
run "ofrep bulk 1000 -> 304, 1000/s"    -c 4 -q 1000 "${post[@]}" -H "If-None-Match: $etag" "$bulk"
fixed_rps=$(cut -d' ' -f1 "$data/fixed_body__saturation" | median)
ours_rps=$(cut -d' ' -f1 "$data/ofrep_single__saturation" | median)
echo "ratio ofrep single / fixed body at saturation: $(python3 -c "print(f'{$ours_rps/$fixed_rps:.2f}')")"
