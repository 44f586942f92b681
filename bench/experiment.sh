#!/usr/bin/env bash
# Resolve inside a running experiment against plain pinned resolve, in the same run, next to a
# minimal hyper server with a fixed body. Load generator: oha (`cargo install oha`). Prints medians
# of RUNS runs and the ratios the experiments issue sets a target for (within 20%: ratio >= 0.80).
#
#   bench/experiment.sh            # RUNS=3 DURATION=10s CONNECTIONS=64 RATE=5000
#   ONLY=new-users RUNS=7 bench/experiment.sh   # just the new-users pair
#   CUTOVER_BIN=/path/to/cutover ...            # a server built elsewhere (before/after)
#
# - same user: every request the same targeting key (the exposure is already recorded: the hot
#   path is one in-memory lookup);
# - new users: a random targeting key per request (native resolve, URL from a regex), so nearly
#   every request is a first exposure that is buffered and written by the flusher. The pinned and
#   the experiment run alternate (pinned, experiment, pinned, ...), so that each ratio compares two
#   runs taken seconds apart on a machine whose load moves; the figure is the median of the ratios.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}; DURATION=${DURATION:-10s}; CONNECTIONS=${CONNECTIONS:-64}; RATE=${RATE:-5000}
PORT=${PORT:-7396}; FIXED_PORT=${FIXED_PORT:-7397}; ONLY=${ONLY:-all}
target=${CARGO_TARGET_DIR:-target}
command -v oha >/dev/null || { echo "needs oha: cargo install oha" >&2; exit 1; }

# CUTOVER_BIN: a server binary built elsewhere (say, main's, for a before/after comparison).
bin=${CUTOVER_BIN:-$target/release/cutover}
[ -n "${CUTOVER_BIN:-}" ] || cargo build --release -q -p cutover
[ "$ONLY" = new-users ] || cargo build --release -q -p cutover-server --example fixed_body
data=$(mktemp -d)
cleanup() { kill "${server:-}" "${fixed:-}" 2>/dev/null || true; rm -rf "$data"; }
trap cleanup EXIT
CUTOVER_LOG=warn "$bin" serve --listen "127.0.0.1:$PORT" --data-dir "$data" >/dev/null &
server=$!
if [ "$ONLY" != new-users ]; then
    "$target/release/examples/fixed_body" "127.0.0.1:$FIXED_PORT" &
    fixed=$!
fi
for _ in $(seq 1 50); do curl -fs "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.2; done
owner=$(cat "$data/cutover-owner-token")
api() { curl -fsS -X "$1" "http://127.0.0.1:$PORT$2" -H "Authorization: Bearer $owner" -H 'Content-Type: application/json' ${3:+-d "$3"}; }

api POST /api/v1/environments '{"name":"production"}' >/dev/null
for flag in plain split; do
    api POST /api/v1/artifacts "{\"key\":\"$flag\",\"value_type\":\"string\"}" >/dev/null
    api POST "/api/v1/artifacts/$flag/versions" '{"content":"value 1","environments":["production"]}' >/dev/null
    api POST "/api/v1/artifacts/$flag/versions" '{"content":"value 2"}' >/dev/null
done
experiment=$(api POST /api/v1/environments/production/experiments \
    '{"artifact":"split","name":"bench","treatments":[2],"primary_metric":"conversion"}' |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
api POST "/api/v1/experiments/$experiment/start" '{}' >/dev/null
sdk=$(api POST /api/v1/tokens '{"name":"bench","role":"sdk","environments":["production"]}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["secret"])')
body='{"context":{"targetingKey":"user-42"}}'
reason=$(curl -fsS -X POST "http://127.0.0.1:$PORT/ofrep/v1/evaluate/flags/split" -H "Authorization: Bearer $sdk" -H 'Content-Type: application/json' -d "$body" | python3 -c 'import json,sys; print(json.load(sys.stdin)["reason"])')
[ "$reason" = SPLIT ] || { echo "the experiment does not split: $reason" >&2; exit 1; }

measure() { oha --no-tui --output-format json -z "$DURATION" "$@" | python3 bench/oha_summary.py; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
run() { # name, then oha arguments; prints median rps, p50 ms, p99 ms
    local name=$1; shift
    local file; file="$data/$(printf '%s' "$name" | tr -c 'a-z0-9' '_')"
    local out=(); for _ in $(seq 1 "$RUNS"); do out+=("$(measure "$@")"); done
    printf '%s\n' "${out[@]}" > "$file"
    summary "$name" "$file"
}
summary() { # name, file of runs
    printf '%-44s rps %8s  p50 %6s ms  p99 %6s ms  (success %s)\n' "$1" \
        "$(cut -d' ' -f1 "$2" | median)" "$(cut -d' ' -f2 "$2" | median)" \
        "$(cut -d' ' -f3 "$2" | median)" "$(cut -d' ' -f4 "$2" | median)"
}
rps() { cut -d' ' -f1 "$data/$1" | median; }
ratio() { python3 -c "print(f'{$(rps "$1")/$(rps "$2"):.2f}')"; }
post=(-m POST -H "Authorization: Bearer $sdk" -H 'Content-Type: application/json' -d "$body")
auth=(-H "Authorization: Bearer $sdk")
native="http://127.0.0.1:$PORT/api/v1/resolve"
pair() { # name of the pinned run, name of the experiment run, pinned URL regex, experiment URL regex
    local pinned experiment
    pinned="$data/$(printf '%s' "$1" | tr -c 'a-z0-9' '_')"; experiment="$data/$(printf '%s' "$2" | tr -c 'a-z0-9' '_')"
    : > "$pinned"; : > "$experiment"
    for _ in $(seq 1 "$RUNS"); do
        measure -c "$CONNECTIONS" "${auth[@]}" --rand-regex-url "$3" >> "$pinned"
        measure -c "$CONNECTIONS" "${auth[@]}" --rand-regex-url "$4" >> "$experiment"
    done
    summary "$1" "$pinned"; summary "$2" "$experiment"
    paste -d' ' <(cut -d' ' -f1 "$experiment") <(cut -d' ' -f1 "$pinned") |
        awk '{printf "%.3f\n", $1/$2}' > "$data/pair_ratios"
    echo "per-run ratios experiment / pinned (new users): $(sort -n "$data/pair_ratios" | tr '\n' ' ')"
}
echo "machine: $(nproc) cores, $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr); runs: $RUNS x $DURATION"
if [ "$ONLY" != new-users ]; then
run "fixed body, saturation"                     -c "$CONNECTIONS" "${post[@]}" "http://127.0.0.1:$FIXED_PORT/"
run "ofrep pinned, saturation"                   -c "$CONNECTIONS" "${post[@]}" "http://127.0.0.1:$PORT/ofrep/v1/evaluate/flags/plain"
run "ofrep experiment same user, saturation"     -c "$CONNECTIONS" "${post[@]}" "http://127.0.0.1:$PORT/ofrep/v1/evaluate/flags/split"
fi
pair "native pinned new users, saturation" "native experiment new users, saturation" \
    "$native/plain[?]targeting_key=user-[0-9]{9}" "$native/split[?]targeting_key=user-[0-9]{9}"
if [ "$ONLY" != new-users ]; then
run "ofrep pinned, $RATE/s"                      -c 16 -q "$RATE" "${post[@]}" "http://127.0.0.1:$PORT/ofrep/v1/evaluate/flags/plain"
run "ofrep experiment same user, $RATE/s"        -c 16 -q "$RATE" "${post[@]}" "http://127.0.0.1:$PORT/ofrep/v1/evaluate/flags/split"
run "native experiment new users, $RATE/s"       -c 16 -q "$RATE" "${auth[@]}" --rand-regex-url "$native/split[?]targeting_key=user-[0-9]{9}"
fi
sleep 2 # the last flush
exposures=$(api GET "/api/v1/experiments/$experiment/results" | python3 -c 'import json,sys; print(json.load(sys.stdin)["exposures"])')
dropped=$(curl -fsS "http://127.0.0.1:$PORT/metrics" | awk '/^cutover_exposures_dropped_total/{print $2}')
if [ "$ONLY" != new-users ]; then
echo "ratio ofrep pinned / fixed body:                   $(ratio ofrep_pinned__saturation fixed_body__saturation)"
echo "ratio ofrep experiment / ofrep pinned (same user): $(ratio ofrep_experiment_same_user__saturation ofrep_pinned__saturation)"
fi
echo "ratio native experiment / native pinned (new users), median of the per-run ratios: $(median < "$data/pair_ratios")"
echo "ratio of the medians: $(ratio native_experiment_new_users__saturation native_pinned_new_users__saturation)"
echo "exposures recorded: $exposures; dropped: ${dropped:-0}"
