#!/usr/bin/env bash
# Side-by-side benchmark of Ferry and its peers on this machine, loopback only.
#
#   bench/compare.sh            # full run, a few minutes on 2 cores
#   QUICK=1 bench/compare.sh    # smaller sizes, about a minute
#
# Builds in release, starts each server in turn, runs the same scenarios
# against each with target/release/loadtest, prints one table and writes it
# to bench/results/<UTC date>.md (the JSON of every run goes beside it).
#
# Peers: Ferry over WS and QUIC (skipped, with a message, until the gateway
# and the client SDK are built), baseline-ws with default and 4 KiB
# buffers, Node.js `ws`, and for idle memory only uWebSockets through
# PyPI socketify. Sizes (env): IDLE_SESSIONS (10000), CLOSED_SESSIONS (100),
# FIXED_SESSIONS (1000) x FIXED_RATE (10 msg/s), DURATION (10 s per run).
#
# The scenarios:
#   idle     hold IDLE_SESSIONS connections: server RSS bytes per connection
#   closed   CLOSED_SESSIONS sessions, closed loop, 32 B and 1 KiB payloads:
#            msgs/s and server CPU µs per echoed message
#   fixed    FIXED_SESSIONS x FIXED_RATE msg/s open loop, 32 B: p50/p99
#            from the intended send time
set -uo pipefail

cd "$(dirname "$0")/.." || exit 2
ROOT=$PWD

if [[ -n "${QUICK:-}" ]]; then
  : "${IDLE_SESSIONS:=2000}" "${CLOSED_SESSIONS:=50}" "${FIXED_SESSIONS:=200}" "${DURATION:=3}"
fi
IDLE_SESSIONS=${IDLE_SESSIONS:-10000}
CLOSED_SESSIONS=${CLOSED_SESSIONS:-100}
FIXED_SESSIONS=${FIXED_SESSIONS:-1000}
FIXED_RATE=${FIXED_RATE:-10}
DURATION=${DURATION:-10}
IDLE_HOLD=${IDLE_HOLD:-5}
FERRY_WORKERS=${FERRY_WORKERS:-2}
FERRY_WS_URL=${FERRY_WS_URL:-ws://127.0.0.1:8080/ws}
FERRY_QUIC_URL=${FERRY_QUIC_URL:-quic://127.0.0.1:4433}
FERRY_CA=${FERRY_CA:-}

STAMP=$(date -u +%Y-%m-%dT%H%M%SZ)
RESULTS=bench/results
RUN_DIR=$RESULTS/$STAMP
REPORT=$RESULTS/$STAMP.md
mkdir -p "$RUN_DIR"
LOG=$RUN_DIR/compare.log
NOTES=()

say() { echo "compare: $*" >&2; echo "$*" >>"$LOG"; }
note() { say "$*"; NOTES+=("$*"); }

# --- file descriptors: every idle connection costs one on each side -------
need=$((IDLE_SESSIONS + 1024))
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if (( $(ulimit -n) < need )); then
  ulimit -n "$need" 2>/dev/null || true
fi
if (( $(ulimit -n) < need )); then
  IDLE_SESSIONS=$(( $(ulimit -n) - 1024 ))
  note "ulimit -n is $(ulimit -n) (hard limit $(ulimit -Hn)): idle runs reduced to $IDLE_SESSIONS connections"
fi

# --- build ------------------------------------------------------------------
say "building (release)"
if ! cargo build --release -q -p loadtest -p baseline-ws 2>>"$LOG"; then
  say "build failed, see $LOG"; exit 2
fi
LT=$ROOT/target/release/loadtest
FERRY_OK=1
if ! cargo build --release -q -p loadtest --features sdk 2>>"$LOG"; then
  FERRY_OK=0
  note "Ferry skipped: loadtest does not build with the client SDK yet (cargo feature sdk)"
  cargo build --release -q -p loadtest 2>>"$LOG" || { say "build failed, see $LOG"; exit 2; }
elif ! cargo build --release -q -p gateway 2>>"$LOG" || [[ ! -x target/release/gateway ]]; then
  FERRY_OK=0
  note "Ferry skipped: target/release/gateway is absent (cargo build --release -p gateway failed)"
fi

# --- peers' own dependencies -------------------------------------------------
NODE_OK=1
if ! command -v node >/dev/null; then
  NODE_OK=0; note "node ws skipped: node is not installed"
elif [[ ! -d bench/node/node_modules/ws ]]; then
  say "installing ws into bench/node"
  (cd bench/node && npm install --no-audit --no-fund --silent) >>"$LOG" 2>&1 \
    || { NODE_OK=0; note "node ws skipped: npm install failed (see $LOG)"; }
fi
UWS_OK=1
if ! python3 -c 'import socketify' 2>/dev/null; then
  say "installing socketify (and Debian's libuv1)"
  if ! dpkg -s libuv1 >/dev/null 2>&1; then
    { apt-get update -q && apt-get install -y -q libuv1; } >>"$LOG" 2>&1 || true
  fi
  pip install -q socketify >>"$LOG" 2>&1 || true
  python3 -c 'import socketify' 2>>"$LOG" \
    || { UWS_OK=0; note "uWebSockets skipped: socketify does not import (see $LOG)"; }
fi

# --- server lifecycle --------------------------------------------------------
SERVER_PID=
wait_port() { # host port seconds
  local deadline=$((SECONDS + $3))
  while (( SECONDS < deadline )); do
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then return 1; fi
    (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null && return 0
    sleep 0.2
  done
  return 1
}
start_server() { # name host port cmd...
  local name=$1 host=$2 port=$3; shift 3
  say "starting $name: $*"
  "$@" >>"$RUN_DIR/$name.server.log" 2>&1 &
  SERVER_PID=$!
  if ! wait_port "$host" "$port" 15; then
    note "$name skipped: it did not listen on $host:$port (see $RUN_DIR/$name.server.log)"
    stop_server
    return 1
  fi
  sleep 0.5
}
stop_server() {
  if [[ -n "$SERVER_PID" ]]; then
    kill "$SERVER_PID" 2>/dev/null
    wait "$SERVER_PID" 2>/dev/null
    SERVER_PID=
  fi
}
trap stop_server EXIT

# --- one loadtest run ----------------------------------------------------------
run_lt() { # peer label args...
  local peer=$1 label=$2; shift 2
  local json=$RUN_DIR/$peer.$label.json
  local load
  load=$(cut -d' ' -f1 /proc/loadavg)
  say "$peer / $label (load average $load): loadtest $*"
  "$LT" "$@" --gateway-pid "$SERVER_PID" --json "$json" >>"$LOG" 2>&1
  local rc=$?
  if (( rc > 1 )) || [[ ! -s $json ]]; then
    note "$peer / $label: loadtest could not run (exit $rc, see $LOG)"
    rm -f "$json"
  elif (( rc == 1 )); then
    note "$peer / $label: checks FAILED (loss, duplicates, reordering or errors; see $json)"
  fi
  echo "$load" >"$json.load"
}

raw_suite() { # peer url [idle-only]
  local peer=$1 url=$2
  run_lt "$peer" idle raw --idle --url "$url" --sessions "$IDLE_SESSIONS" --duration "$IDLE_HOLD"
  [[ "${3:-}" == idle-only ]] && return
  run_lt "$peer" closed-32B raw --closed-loop --url "$url" --sessions "$CLOSED_SESSIONS" --payload 32 --duration "$DURATION"
  run_lt "$peer" closed-1KiB raw --closed-loop --url "$url" --sessions "$CLOSED_SESSIONS" --payload 1024 --duration "$DURATION"
  run_lt "$peer" fixed raw --url "$url" --sessions "$FIXED_SESSIONS" --rate "$FIXED_RATE" --payload 32 --duration "$DURATION"
}

ferry_suite() { # peer transport url
  local peer=$1 t=$2 url=$3 tls=()
  if [[ $t != ws ]]; then
    if [[ -n "$FERRY_CA" ]]; then tls=(--ca "$FERRY_CA"); else tls=(--insecure-dev); fi
  fi
  run_lt "$peer" idle idle --transport "$t" --url "$url" "${tls[@]}" --sessions "$IDLE_SESSIONS" --duration "$IDLE_HOLD"
  run_lt "$peer" closed-32B echo --closed-loop --transport "$t" --url "$url" "${tls[@]}" --sessions "$CLOSED_SESSIONS" --payload 32 --duration "$DURATION"
  run_lt "$peer" closed-1KiB echo --closed-loop --transport "$t" --url "$url" "${tls[@]}" --sessions "$CLOSED_SESSIONS" --payload 1024 --duration "$DURATION"
  run_lt "$peer" fixed echo --transport "$t" --url "$url" "${tls[@]}" --sessions "$FIXED_SESSIONS" --rate "$FIXED_RATE" --payload 32 --duration "$DURATION"
}

say "results: $REPORT"
START_LOAD=$(cat /proc/loadavg)

# --- the peers -------------------------------------------------------------------
if (( FERRY_OK )); then
  for t in ws quic; do
    url=$FERRY_WS_URL; [[ $t == quic ]] && url=$FERRY_QUIC_URL
    # The gateway always serves WebSocket: its port says it is up.
    if start_server "ferry-$t" 127.0.0.1 8080 env FERRY_SERVER_WORKERS="$FERRY_WORKERS" target/release/gateway; then
      ferry_suite "ferry-$t" "$t" "$url"
      stop_server
    fi
  done
fi
for buffers in default 4k; do
  if start_server "baseline-ws-$buffers" 127.0.0.1 9001 target/release/baseline-ws --listen 127.0.0.1:9001 --buffers "$buffers"; then
    raw_suite "baseline-ws-$buffers" ws://127.0.0.1:9001/
    stop_server
  fi
done
if (( NODE_OK )) && start_server node-ws 127.0.0.1 9003 node bench/node/echo.js --listen 127.0.0.1:9003; then
  raw_suite node-ws ws://127.0.0.1:9003/
  stop_server
fi
if (( UWS_OK )) && start_server uws-socketify 127.0.0.1 9004 python3 bench/uws/echo.py --listen 127.0.0.1:9004; then
  raw_suite uws-socketify ws://127.0.0.1:9004/ idle-only
  stop_server
fi

# --- the table -----------------------------------------------------------------------
{
  echo "# Ferry and peers, $STAMP"
  echo
  echo "Machine: $(nproc) cores, $(uname -r), load average at start: $START_LOAD."
  echo "Sizes: idle $IDLE_SESSIONS connections held ${IDLE_HOLD} s; closed loop $CLOSED_SESSIONS sessions;"
  echo "fixed rate $FIXED_SESSIONS sessions x $FIXED_RATE msg/s; ${DURATION} s per run; loopback."
  echo "Latency is from the intended send time (open loop) in µs; server CPU is"
  echo "user+system time of the server process per delivered message; RSS per idle"
  echo "connection is (VmRSS with the connections - before) / connections."
  echo "JSON of every run: $RUN_DIR/. A high load average means another process shared the cores."
  echo
  python3 - "$RUN_DIR" <<'PY'
import json, pathlib, sys
run = pathlib.Path(sys.argv[1])
order = ["idle", "closed-32B", "closed-1KiB", "fixed"]
rows = []
for f in sorted(run.glob("*.json")):
    peer, label = f.name[: -len(".json")].rsplit(".", 1)
    r = json.loads(f.read_text())
    load = (f.parent / (f.name + ".load")).read_text().strip() if (f.parent / (f.name + ".load")).exists() else ""
    lat = r.get("latency_us") or {}
    fmt = lambda v, d=0: "-" if v is None else f"{v:,.{d}f}"
    m = r["messages"]
    ok = m["lost"] == m["duplicated"] == m["reordered"] == 0 and not r["errors"]
    rows.append((peer, order.index(label) if label in order else 99, label,
                 "-" if label == "idle" else fmt(r["throughput_msgs_per_s"]),
                 fmt(lat.get("p50")), fmt(lat.get("p99")),
                 "-" if label == "idle" else fmt(r["server_cpu_us_per_msg"], 2),
                 fmt(r["gateway_rss_bytes_per_session"]),
                 f'{r["sessions"]["established"]}/{r["sessions"]["attempted"]}',
                 fmt(r["loadgen_cpu_percent"]), load, "ok" if ok else "FAILED"))
rows.sort(key=lambda r: (r[0], r[1]))
head = ["server", "scenario", "msgs/s", "p50 µs", "p99 µs", "server CPU µs/msg", "RSS B/idle conn", "sessions", "loadgen CPU %", "load avg", "checks"]
print("| " + " | ".join(head) + " |")
print("|" + "|".join("---" for _ in head) + "|")
for r in rows:
    print("| " + " | ".join(str(x) for x in (r[0],) + r[2:]) + " |")
PY
  if (( ${#NOTES[@]} )); then
    echo
    echo "Notes:"
    for n in "${NOTES[@]}"; do echo "- $n"; done
  fi
} >"$REPORT"
cat "$REPORT"
