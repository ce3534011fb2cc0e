#!/usr/bin/env bash
# Smoke test of the load tester against the real gateway (for humans, not CI).
#
#   bench/smoke.sh              # build (release), then about two minutes
#   NO_BUILD=1 bench/smoke.sh   # use the binaries in target/release as they are
#
# Starts a fresh release gateway (every listener on port 0, a throwaway data
# directory, a 2 s resume window so that the churn leak check can see closed
# sessions expire) and runs every Ferry scenario briefly over WS, WSS and
# QUIC; then the raw scenarios against baseline-ws (echo, and broadcast for
# --fanout). Each run must exit 0 and write a JSON report with the
# documented fields. Prints one line per run and exits 1 if any failed.
#
# Sizes (env): SESSIONS (20), DURATION (2 s), RATE (20 msg/s per session).
set -uo pipefail

cd "$(dirname "$0")/.." || exit 2
SESSIONS=${SESSIONS:-20}
DURATION=${DURATION:-2}
RATE=${RATE:-20}

if [[ -z "${NO_BUILD:-}" ]]; then
  echo "smoke: building (release)" >&2
  cargo build --release -q -p gateway -p loadtest -p baseline-ws || exit 2
fi
LT=$PWD/target/release/loadtest
for bin in gateway loadtest baseline-ws; do
  [[ -x target/release/$bin ]] || { echo "smoke: target/release/$bin is missing" >&2; exit 2; }
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/ferry-smoke.XXXXXX")
echo "smoke: logs and JSON in $WORK" >&2

GW_PID= BASE_PID=
stop() { # PID: SIGTERM and wait, only for a process this script started
  [[ -n "$1" ]] || return 0
  kill "$1" 2>/dev/null
  wait "$1" 2>/dev/null
}
cleanup() { stop "$BASE_PID"; stop "$GW_PID"; }
trap cleanup EXIT

# wait_line FILE PATTERN SECONDS PID: the first line of FILE matching PATTERN.
wait_line() {
  local deadline=$((SECONDS + $3)) line
  while (( SECONDS < deadline )); do
    line=$(grep -m1 -E "$2" "$1" 2>/dev/null) && { echo "$line"; return 0; }
    kill -0 "$4" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}
field() { # LINE KEY: the value of KEY=value in a ready line
  sed -E "s/.*[[:space:]]$2=([^[:space:]]+).*/\1/" <<<"$1"
}

# --- the gateway ----------------------------------------------------------------
FERRY_SESSION_RESUME_WINDOW=2s FERRY_LOG_LEVEL=warn \
  target/release/gateway --ws 127.0.0.1:0 --wss 127.0.0.1:0 --quic 127.0.0.1:0 \
  --ops 127.0.0.1:0 --data-dir "$WORK/ferry-data" --drain-timeout 1s \
  >"$WORK/gateway.out" 2>"$WORK/gateway.err" &
GW_PID=$!
READY=$(wait_line "$WORK/gateway.out" '^ferry gateway ready:' 20 "$GW_PID") || {
  echo "smoke: the gateway did not get ready; see $WORK/gateway.err" >&2
  exit 2
}
echo "smoke: $READY" >&2
WS=ws://$(field "$READY" ws)/ws
WSS=wss://$(field "$READY" wss)/ws
QUIC=quic://$(field "$READY" quic)
CA=$(field "$READY" cert)
METRICS=http://$(field "$READY" ops)/metrics

# --- the runs -------------------------------------------------------------------
RESULTS=()
FAILED=0
# run NAME loadtest-args...: runs it, checks the exit code and the JSON.
run() {
  local name=$1; shift
  local json=$WORK/$name.json log=$WORK/$name.log rc verdict
  local load
  load=$(cut -d' ' -f1 /proc/loadavg)
  "$LT" "$@" --sessions "$SESSIONS" --duration "$DURATION" --json "$json" >"$log" 2>&1
  rc=$?
  verdict=ok
  if (( rc != 0 )); then
    verdict="FAILED (exit $rc: $(grep -m1 '^loadtest:' "$log" | cut -c1-150))"
  elif ! schema=$(check_json "$json" 2>&1); then
    rc=1
    verdict="FAILED (JSON: $schema)"
  fi
  (( rc == 0 )) || FAILED=1
  RESULTS+=("$(printf '%-22s load %-5s %s' "$name" "$load" "$verdict")")
  echo "smoke: ${RESULTS[-1]}" >&2
}

# The report's documented fields (loadtest/src/report.rs) and their types.
check_json() {
  python3 - "$1" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
num = (int, float)
want = {
    "scenario": str, "transport": str, "sessions": dict, "messages": dict,
    "throughput_msgs_per_s": num, "latency_us": (dict, type(None)),
    "errors": dict, "gateway_rss_bytes_per_session": num + (type(None),),
    "server_cpu_us_per_msg": num + (type(None),), "loadgen_cpu_percent": num,
    "duration_s": num,
}
problems = [f"{k} missing" for k in want if k not in r]
problems += [f"unexpected {k}" for k in r if k not in want]
problems += [f"{k} is {type(r[k]).__name__}" for k, t in want.items() if k in r and not isinstance(r[k], t)]
nested = {"sessions": ["attempted", "established", "failed"],
          "messages": ["sent", "delivered", "lost", "duplicated", "reordered"],
          "latency_us": ["p50", "p90", "p99", "p999", "max"]}
for k, keys in nested.items():
    if isinstance(r.get(k), dict) and sorted(r[k]) != sorted(keys):
        problems.append(f"{k} has {sorted(r[k])}")
if r.get("server_cpu_us_per_msg") is None and r.get("scenario") not in ("idle", "raw-idle"):
    problems.append("server_cpu_us_per_msg is null although --gateway-pid was given")
if r.get("scenario") in ("idle", "raw-idle") and r.get("gateway_rss_bytes_per_session") is None:
    problems.append("gateway_rss_bytes_per_session is null for an idle run")
if problems:
    sys.exit("; ".join(problems))
PY
}

for t in ws wss quic; do
  case $t in
    ws) target=(--transport ws --url "$WS") ;;
    wss) target=(--transport wss --url "$WSS" --ca "$CA") ;;
    quic) target=(--transport quic --url "$QUIC" --ca "$CA") ;;
  esac
  common=("${target[@]}" --gateway-pid "$GW_PID" --rate "$RATE")
  run "$t-connect" connect "${common[@]}"
  run "$t-idle" idle "${common[@]}"
  run "$t-echo" echo "${common[@]}"
  run "$t-echo-closed" echo --closed-loop "${common[@]}"
  run "$t-fanout" fanout "${common[@]}"
  run "$t-resume" resume --cut-interval 0.5 "${common[@]}"
  run "$t-churn" churn --metrics-url "$METRICS" --leak-timeout 15 --connect-rate 200 "${common[@]}"
done

# --- raw, against baseline-ws ---------------------------------------------------
for mode in echo broadcast; do
  target/release/baseline-ws --listen 127.0.0.1:0 --buffers 4k --mode "$mode" \
    2>"$WORK/baseline-$mode.err" &
  BASE_PID=$!
  line=$(wait_line "$WORK/baseline-$mode.err" 'listening on ws://[0-9.:]+/ pid=' 10 "$BASE_PID") || {
    echo "smoke: baseline-ws --mode $mode did not start" >&2
    FAILED=1
    stop "$BASE_PID"
    BASE_PID=
    continue
  }
  url=$(sed -E 's/.*listening on ([^ ]+).*/\1/' <<<"$line")
  common=(--url "$url" --gateway-pid "$BASE_PID" --rate "$RATE")
  if [[ $mode == echo ]]; then
    run raw-echo raw "${common[@]}"
    run raw-closed raw --closed-loop "${common[@]}"
    run raw-idle raw --idle "${common[@]}"
  else
    run raw-fanout raw --fanout "${common[@]}"
  fi
  stop "$BASE_PID"
  BASE_PID=
done

echo
printf '%s\n' "${RESULTS[@]}"
if (( FAILED )); then
  echo "smoke: FAILED; logs and JSON in $WORK" >&2
  exit 1
fi
echo "smoke: all ${#RESULTS[@]} runs passed" >&2
rm -rf "$WORK"
