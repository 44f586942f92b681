#!/usr/bin/env bash
# Instructions per OFREP request, load-independent: `cutover serve` (SQLite, FLAGS flags pinned to
# production, an sdk token) runs under valgrind's callgrind with instrumentation off; after seeding
# and a warm-up, it is switched on for exactly N keep-alive requests of each kind, one
# connection, and the server's user-space instructions (Ir) are divided by N. Kernel work (the
# network stack) is not counted; neither is the client.
#
#   CUTOVER_BIN=target/release/cutover bench/ofrep_instructions.sh   # N=2000 FLAGS=1000
#   KEEP=1 ...   keeps the callgrind files (callgrind_annotate them for the top functions)
set -euo pipefail
N=${N:-2000}; FLAGS=${FLAGS:-1000}; PORT=${PORT:-7397}
CUTOVER_BIN=$(realpath "${CUTOVER_BIN:-target/release/cutover}")
command -v valgrind >/dev/null || { echo "needs valgrind (apt-get install valgrind)" >&2; exit 1; }
data=$(mktemp -d)
cleanup() { [[ -n ${server:-} ]] && kill "$server" 2>/dev/null; wait 2>/dev/null || true; [[ -n ${KEEP:-} ]] || rm -rf "$data"; }
trap cleanup EXIT
(cd "$data" && CUTOVER_LOG=warn exec valgrind --tool=callgrind --instr-atstart=no \
    --callgrind-out-file="$data/callgrind.%p" "$CUTOVER_BIN" serve --listen "127.0.0.1:$PORT" --data-dir "$data") \
    >"$data/server.log" 2>&1 &
server=$!
for _ in $(seq 1 600); do curl -fs "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break; sleep 0.2; done
owner=$(cat "$data/cutover-owner-token")

python3 - "$PORT" "$owner" "$FLAGS" "$N" "$server" <<'PY'
import http.client, json, subprocess, sys
port, owner, flags, n, pid = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)

def call(method, path, body, headers):
    conn.request(method, path, body, headers)
    r = conn.getresponse()
    return r.status, dict(r.getheaders()), r.read()

def api(method, path, body):
    status, _, data = call(method, path, json.dumps(body), {"Authorization": f"Bearer {owner}", "Content-Type": "application/json"})
    assert status < 300, (path, status, data)
    return json.loads(data) if data else None

api("POST", "/api/v1/environments", {"name": "production"})
for i in range(1, flags + 1):
    api("POST", "/api/v1/artifacts", {"key": f"flag-{i}", "value_type": "json"})
    api("POST", f"/api/v1/artifacts/flag-{i}/versions",
        {"content": {"enabled": True, "variant": "blue", "payload": {"n": i, "label": f"feature number {i}"}},
         "environments": ["production"]})
sdk = api("POST", "/api/v1/tokens", {"name": "bench", "role": "sdk", "environments": ["production"]})["secret"]
body = '{"context":{"targetingKey":"user-1"}}'
auth = {"Authorization": f"Bearer {sdk}", "Content-Type": "application/json"}
_, headers, _ = call("POST", "/ofrep/v1/evaluate/flags", body, auth)
etag = {k.lower(): v for k, v in headers.items()}["etag"]
kinds = [("one flag", "/ofrep/v1/evaluate/flags/flag-1", {}, 200),
         ("bulk answered 304", "/ofrep/v1/evaluate/flags", {"If-None-Match": etag}, 304)]

def dump(tag):
    # One file per dump (callgrind.PID.1, .2): the counts since the previous one.
    subprocess.run(["callgrind_control", "-d", tag, pid], check=True, capture_output=True)

for name, path, extra, expect in kinds:
    for _ in range(200):  # warm-up, not collected
        status, _, _ = call("POST", path, body, {**auth, **extra})
        assert status == expect, (name, status)
    subprocess.run(["callgrind_control", "-i", "on", pid], check=True, capture_output=True)
    for _ in range(n):
        call("POST", path, body, {**auth, **extra})
    subprocess.run(["callgrind_control", "-i", "off", pid], check=True, capture_output=True)
    dump(name.replace(" ", "-"))
PY

python3 - "$data" "$N" <<'PY'
import glob, re, sys
data, n = sys.argv[1], int(sys.argv[2])
for part, name in [(1, "one flag"), (2, "bulk answered 304")]:
    (path,) = glob.glob(f"{data}/callgrind.*.{part}")
    text = open(path, errors="replace").read()
    ir = max(int(v) for v in re.findall(r"^(?:totals|summary): (\d+)", text, re.M))
    print(f"{name}: {ir / n:,.0f} instructions per request (server, user space; N={n})")
PY
[[ -n ${KEEP:-} ]] && echo "callgrind files kept in $data" >&2
exit 0
