#!/usr/bin/env bash
# Side-by-side benchmark of Ferry and its peers on this machine, loopback only.
#
#   bench/compare.sh            # full run, about fifteen minutes on 2 cores
#   QUICK=1 bench/compare.sh    # smaller sizes, a few minutes
#
# Builds in release, starts each server in turn (a fresh process for each
# suite, every listener on a free port), runs the same scenarios against
# each with target/release/loadtest, and writes bench/results/<UTC date>.md:
# a summary table (one column per server), the ratios of Ferry to every
# peer measured in this same run, the BRIEF.md targets, and every run with
# the load average it saw. The JSON of every run goes beside it, and
# bench/results/<UTC date>.html shows the same run as one bar chart per
# metric, every server side by side, Ferry's ratio to each peer marked.
#
# Peers: the Ferry gateway over WS, WSS (idle only) and QUIC, driven through
# the client SDK; baseline-ws (tokio + tokio-tungstenite) with default and
# 4 KiB buffers, in echo mode and, for fan-out, broadcast mode; Node.js `ws`;
# uWebSockets through PyPI socketify for idle memory only.
#
# The scenarios (BRIEF.md numbering):
#   1 idle      hold IDLE_SESSIONS connections: server RSS bytes per connection
#   2 closed    CLOSED_SESSIONS sessions, closed loop, 32 B and 1 KiB: msgs/s
#               and server CPU µs per echoed message. For Ferry the "echo" is
#               the full protocol: PUBLISH to the session's own channel,
#               PUBACK, MESSAGE (sequenced, in the replay log), ACK.
#   3 fixed     FIXED_SESSIONS x FIXED_RATE msg/s open loop, 32 B: p50/p99/p99.9
#               from the intended send time
#   4 fanout    1 publisher at FANOUT_RATE msg/s to FANOUT_SUBSCRIBERS
#               subscribers: deliveries/s, publish-to-delivery p50/p99,
#               server CPU per delivery (baselines: --mode broadcast); then
#               fanout-max, the same at FANOUT_MAX_RATE msg/s for
#               FANOUT_MAX_DURATION s: about what one generator core can
#               receive, it shows the server CPU per delivery when writes
#               batch. Offer much more (1000 msg/s) and the generator falls
#               behind: Ferry then cuts subscribers as slow consumers (ERROR
#               301, session lost, counted as lost messages) by design,
#               where baseline-ws buffers without bound.
#   5 churn     Ferry only: CHURN_LOOPS loops of connect, subscribe, publish,
#               receive, close for CHURN_DURATION s: cycles (handshakes)/s,
#               server CPU per cycle, and the server's RSS before, at its
#               peak and once the closed sessions have expired (the gateway
#               runs with a CHURN_RESUME_WINDOW resume window for this)
#
# Sizes (env): IDLE_SESSIONS (10000), IDLE_HOLD (5 s), CLOSED_SESSIONS (100),
# FIXED_SESSIONS (1000), FIXED_RATE (10), DURATION (10 s per run),
# FANOUT_SUBSCRIBERS (1000), FANOUT_RATE (20), FANOUT_MAX_RATE (300),
# FANOUT_MAX_DURATION (5 s), CHURN_LOOPS (50),
# CHURN_DURATION (10), CHURN_RESUME_WINDOW (3s), FERRY_WORKERS (2),
# QUIC_CONNECT_RATE (400 handshakes/s: the generator's QUIC client costs
# about 1 ms of CPU per handshake), WSS_CONNECT_RATE (1000). SCENARIOS
# picks scenarios (default: idle closed-32B closed-1KiB fixed fanout
# fanout-max churn); REPEAT=N runs everything N times and reports medians.
set -uo pipefail

cd "$(dirname "$0")/.." || exit 2
ROOT=$PWD

if [[ -n "${QUICK:-}" ]]; then
  : "${IDLE_SESSIONS:=2000}" "${CLOSED_SESSIONS:=50}" "${FIXED_SESSIONS:=200}" "${DURATION:=3}"
  : "${FANOUT_SUBSCRIBERS:=200}" "${CHURN_DURATION:=3}"
fi
IDLE_SESSIONS=${IDLE_SESSIONS:-10000}
IDLE_HOLD=${IDLE_HOLD:-5}
CLOSED_SESSIONS=${CLOSED_SESSIONS:-100}
FIXED_SESSIONS=${FIXED_SESSIONS:-1000}
FIXED_RATE=${FIXED_RATE:-10}
DURATION=${DURATION:-10}
FANOUT_SUBSCRIBERS=${FANOUT_SUBSCRIBERS:-1000}
FANOUT_RATE=${FANOUT_RATE:-20}
FANOUT_MAX_RATE=${FANOUT_MAX_RATE:-300}
FANOUT_MAX_DURATION=${FANOUT_MAX_DURATION:-5}
CHURN_LOOPS=${CHURN_LOOPS:-50}
CHURN_DURATION=${CHURN_DURATION:-10}
CHURN_RESUME_WINDOW=${CHURN_RESUME_WINDOW:-3s}
FERRY_WORKERS=${FERRY_WORKERS:-2}
QUIC_CONNECT_RATE=${QUIC_CONNECT_RATE:-400}
WSS_CONNECT_RATE=${WSS_CONNECT_RATE:-1000}
SCENARIOS=${SCENARIOS:-idle closed-32B closed-1KiB fixed fanout fanout-max churn}
REPEAT=${REPEAT:-1}

STAMP=$(date -u +%Y-%m-%dT%H%M%SZ)
RESULTS=bench/results
RUN_DIR=$RESULTS/$STAMP
REPORT=$RESULTS/$STAMP.md
mkdir -p "$RUN_DIR"
LOG=$RUN_DIR/compare.log
NOTES=()

say() { echo "compare: $(date +%T) $*" >&2; echo "$(date +%T) $*" >>"$LOG"; }
note() { say "$*"; NOTES+=("$*"); }

# --- file descriptors: every idle connection costs one on each side -------
need=$((IDLE_SESSIONS + 1024))
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if (( $(ulimit -n) < need )); then
  IDLE_SESSIONS=$(( $(ulimit -n) - 1024 ))
  note "ulimit -n is $(ulimit -n) (hard limit $(ulimit -Hn)): idle runs reduced to $IDLE_SESSIONS connections"
fi

# --- build ------------------------------------------------------------------
say "building (release)"
if ! cargo build --release -q -p gateway -p loadtest -p baseline-ws 2>>"$LOG"; then
  say "build failed, see $LOG"; exit 2
fi
LT=$ROOT/target/release/loadtest

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
# One server at a time; SERVER_PID is always a process this script started.
SERVER_PID=
stop_server() {
  if [[ -n "$SERVER_PID" ]]; then
    kill "$SERVER_PID" 2>/dev/null
    wait "$SERVER_PID" 2>/dev/null
    SERVER_PID=
  fi
}
trap stop_server EXIT

# wait_line FILE PATTERN SECONDS: the first line of FILE matching PATTERN,
# while SERVER_PID lives.
wait_line() {
  local deadline=$((SECONDS + $3)) line
  while (( SECONDS < deadline )); do
    line=$(grep -m1 -E "$2" "$1" 2>/dev/null) && { echo "$line"; return 0; }
    kill -0 "$SERVER_PID" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}
field() { sed -E "s/.*[[:space:]]$2=([^[:space:]]+).*/\1/" <<<"$1"; }

# start_ferry NAME [ENV=VALUE...]: a fresh gateway, every listener on a free
# port; sets FERRY_WS FERRY_WSS FERRY_QUIC FERRY_CA FERRY_METRICS.
start_ferry() {
  local name=$1; shift
  local dir=$RUN_DIR/$name
  mkdir -p "$dir"
  say "starting $name: gateway --workers $FERRY_WORKERS $*"
  env FERRY_LOG_LEVEL=warn "$@" target/release/gateway --workers "$FERRY_WORKERS" \
    --ws 127.0.0.1:0 --wss 127.0.0.1:0 --quic 127.0.0.1:0 --ops 127.0.0.1:0 \
    --data-dir "$dir/ferry-data" --drain-timeout 1s >"$dir/gateway.out" 2>"$dir/gateway.err" &
  SERVER_PID=$!
  local ready
  if ! ready=$(wait_line "$dir/gateway.out" '^ferry gateway ready:' 20); then
    note "$name skipped: the gateway did not get ready (see $dir/gateway.err)"
    stop_server
    return 1
  fi
  FERRY_WS=ws://$(field "$ready" ws)/ws
  FERRY_WSS=wss://$(field "$ready" wss)/ws
  FERRY_QUIC=quic://$(field "$ready" quic)
  FERRY_CA=$(field "$ready" cert)
  FERRY_METRICS=http://$(field "$ready" ops)/metrics
  sleep 0.5
}

# start_server NAME URL-PATTERN CMD...: a peer that prints its URL on its
# output (baseline-ws prints the bound address; node and uws a fixed one).
start_server() {
  local name=$1 pattern=$2; shift 2
  local out=$RUN_DIR/$name.server.log
  say "starting $name: $*"
  "$@" >"$out" 2>&1 &
  SERVER_PID=$!
  local line
  if ! line=$(wait_line "$out" "$pattern" 15); then
    note "$name skipped: it did not start (see $out)"
    stop_server
    return 1
  fi
  SERVER_URL=$(grep -m1 -oE 'ws://[0-9.]+:[0-9]+/?' <<<"$line")
  sleep 0.5
}

rss_kb() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status" 2>/dev/null; }

# --- one loadtest run ----------------------------------------------------------
# run_lt PEER LABEL ARGS...: one run; PEER.LABEL.json, with .load beside it.
run_lt() {
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

# start_peer PEER LABEL: a fresh server for one run; sets SERVER_PID and
# TARGET (the loadtest flags that reach it). Churn gets a gateway with a
# short resume window, so that the closed sessions expire.
start_peer() {
  local peer=$1 label=$2 env=() rate=2000
  [[ $label == churn ]] && env=(FERRY_SESSION_RESUME_WINDOW="$CHURN_RESUME_WINDOW")
  case $peer in
    ferry-*)
      start_ferry "$peer.$label" "${env[@]}" || return 1
      case $peer in
        ferry-ws) TARGET=(--transport ws --url "$FERRY_WS") ;;
        ferry-wss) TARGET=(--transport wss --url "$FERRY_WSS" --ca "$FERRY_CA"); rate=$WSS_CONNECT_RATE ;;
        ferry-quic) TARGET=(--transport quic --url "$FERRY_QUIC" --ca "$FERRY_CA"); rate=$QUIC_CONNECT_RATE ;;
      esac
      # Churn loops pace themselves: the connect rate is only a ceiling.
      [[ $label == churn ]] && rate=20000
      TARGET+=(--connect-rate "$rate" --connect-timeout 20)
      ;;
    baseline-ws-*)
      local mode=echo
      [[ $label == fanout* ]] && mode=broadcast
      start_server "$peer.$label" 'listening on ws://[0-9.:]+/ pid=' target/release/baseline-ws --listen 127.0.0.1:0 \
        --buffers "${peer#baseline-ws-}" --mode "$mode" || return 1
      TARGET=(--url "$SERVER_URL")
      ;;
    node-ws)
      start_server "$peer.$label" 'echo on' node bench/node/echo.js --listen 127.0.0.1:0 || return 1
      TARGET=(--url "$SERVER_URL")
      ;;
    uws-socketify)
      start_server "$peer.$label" 'echo on' python3 bench/uws/echo.py --listen 127.0.0.1:9004 || return 1
      TARGET=(--url "$SERVER_URL")
      ;;
  esac
}

# measure PEER LABEL: one scenario against one peer, on a fresh server.
measure() {
  local peer=$1 label=$2 run=${3:-$2} ferry=
  [[ $peer == ferry-* ]] && ferry=1
  start_peer "$peer" "$label" || return
  local sizes=() cmd=()
  case $label in
    idle) sizes=(--sessions "$IDLE_SESSIONS" --duration "$IDLE_HOLD") ;;
    closed-32B) sizes=(--sessions "$CLOSED_SESSIONS" --payload 32 --duration "$DURATION") ;;
    closed-1KiB) sizes=(--sessions "$CLOSED_SESSIONS" --payload 1024 --duration "$DURATION") ;;
    fixed) sizes=(--sessions "$FIXED_SESSIONS" --rate "$FIXED_RATE" --payload 32 --duration "$DURATION") ;;
    fanout) sizes=(--sessions "$FANOUT_SUBSCRIBERS" --rate "$FANOUT_RATE" --payload 32 --duration "$DURATION") ;;
    fanout-max) sizes=(--sessions "$FANOUT_SUBSCRIBERS" --rate "$FANOUT_MAX_RATE" --payload 32
                       --duration "$FANOUT_MAX_DURATION" --drain-timeout 20) ;;
  esac
  case $label in
    idle) if [[ -n $ferry ]]; then cmd=(idle); else cmd=(raw --idle); fi ;;
    closed-*) if [[ -n $ferry ]]; then cmd=(echo --closed-loop); else cmd=(raw --closed-loop); fi ;;
    fixed) if [[ -n $ferry ]]; then cmd=(echo); else cmd=(raw); fi ;;
    fanout*) if [[ -n $ferry ]]; then cmd=(fanout); else cmd=(raw --fanout); fi ;;
  esac
  case $label in
    churn)
      local json=$RUN_DIR/$peer.$run.json before
      before=$(rss_kb "$SERVER_PID" VmRSS)
      run_lt "$peer" "$run" churn "${TARGET[@]}" --metrics-url "$FERRY_METRICS" --leak-timeout 30 \
        --sessions "$CHURN_LOOPS" --duration "$CHURN_DURATION"
      # The leak check waited for the sessions to expire; give the sweeper
      # and the allocator a moment more.
      sleep 2
      echo "$before $(rss_kb "$SERVER_PID" VmHWM) $(rss_kb "$SERVER_PID" VmRSS)" >"$json.rss"
      ;;
    *) run_lt "$peer" "$run" "${cmd[@]}" "${TARGET[@]}" "${sizes[@]}" ;;
  esac
  stop_server
}

say "results: $REPORT"
START_LOAD=$(cat /proc/loadavg)

# --- the runs --------------------------------------------------------------------
# Scenario by scenario, every peer in turn, each on a fresh server: the
# peers of one scenario are measured minutes apart, under the same load.
# With REPEAT=N the whole sequence runs N times (runs 2.. are named
# LABEL~2, ...); the summary shows the median of the repeats.
RAW_PEERS=(baseline-ws-default baseline-ws-4k)
(( NODE_OK )) && RAW_PEERS+=(node-ws)
for rep in $(seq 1 "$REPEAT"); do
  for label in $SCENARIOS; do
    case $label in
      idle) peers=(ferry-ws ferry-wss ferry-quic "${RAW_PEERS[@]}"); (( UWS_OK )) && peers+=(uws-socketify) ;;
      closed-*|fixed) peers=(ferry-ws ferry-quic "${RAW_PEERS[@]}") ;;
      fanout*) peers=(ferry-ws ferry-quic baseline-ws-default baseline-ws-4k) ;;
      churn) peers=(ferry-ws ferry-quic) ;;
      *) say "unknown scenario $label in SCENARIOS"; exit 2 ;;
    esac
    run=$label
    (( rep > 1 )) && run="$label~$rep"
    for peer in "${peers[@]}"; do
      measure "$peer" "$label" "$run"
    done
  done
done
END_LOAD=$(cat /proc/loadavg)

# --- the tables ----------------------------------------------------------------------
{
  echo "# Ferry and peers, $STAMP"
  echo
  echo "Machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), $(free -h | awk '/^Mem:/ {print $2}') RAM, Linux $(uname -r)."
  echo "Load average at start: $START_LOAD; at the end: $END_LOAD."
  echo "Sizes: idle $IDLE_SESSIONS connections held ${IDLE_HOLD} s; closed loop $CLOSED_SESSIONS sessions;"
  echo "fixed rate $FIXED_SESSIONS sessions x $FIXED_RATE msg/s; fan-out 1 publisher x $FANOUT_RATE msg/s"
  echo "(and $FANOUT_MAX_RATE msg/s for ${FANOUT_MAX_DURATION} s) to $FANOUT_SUBSCRIBERS subscribers; churn $CHURN_LOOPS loops"
  echo "for ${CHURN_DURATION} s; ${DURATION} s per run;"
  echo "Ferry with $FERRY_WORKERS workers; loopback; each scenario run $REPEAT time(s) (medians shown)."
  echo "JSON of every run: $RUN_DIR/."
  echo
  python3 bench/report.py "$RUN_DIR"
  if (( ${#NOTES[@]} )); then
    echo
    echo "Notes from the run:"
    for n in "${NOTES[@]}"; do echo "- $n"; done
  fi
} >"$REPORT"
# The same run as a page: one bar chart per metric, Ferry's ratios marked.
HTML=$RESULTS/$STAMP.html
python3 bench/report.py --html "$HTML" --markdown "$REPORT" "$RUN_DIR" >/dev/null \
  || say "the HTML page could not be written"
cat "$REPORT"
say "page: $HTML"
