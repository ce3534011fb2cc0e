#!/usr/bin/env bash
# Upgrade under load: start a release gateway, drive it with the load
# tester, start a second gateway with --takeover in the middle, and report
# what the load tester saw (loss, duplicates, order, latency) and how long
# the handover took (from the two gateways' logs). The load tester also
# writes an HTML report whose timeline marks the upgrade window: when the
# new process was started, when it was ready, when the old one exited.
#
#   bench/upgrade.sh                           # 1000 WS sessions x 10 msg/s
#   TRANSPORT=quic SESSIONS=300 bench/upgrade.sh
#   SESSIONS=10000 RATE=1 DURATION=25 AT=12 RECONNECT_RATE=20000 bench/upgrade.sh
#   PROFILE=debug SESSIONS=100 DURATION=10 AT=4 bench/upgrade.sh   # quick, debug build
#
# Loopback only; bounded by DURATION.
set -euo pipefail
cd "$(dirname "$0")/.."
TRANSPORT=${TRANSPORT:-ws}
SESSIONS=${SESSIONS:-1000}
RATE=${RATE:-10}
DURATION=${DURATION:-20}
AT=${AT:-7}
RECONNECT_RATE=${RECONNECT_RATE:-2000}
PROFILE=${PROFILE:-release}
case $PROFILE in
  release) cargo build --release -q -p gateway -p loadtest ;;
  debug) cargo build -q -p gateway -p loadtest ;;
  *) echo "PROFILE must be release or debug" >&2; exit 2 ;;
esac
G=target/$PROFILE/gateway
L=target/$PROFILE/loadtest
OUT=$(mktemp -d /tmp/ferry-upgrade.XXXXXX)
# Marks for the report's timeline: "<unix time> <what>", one per line.
MARKS=$OUT/marks
mark() { echo "$(date +%s.%N) $*" >>"$MARKS"; }
: >"$MARKS"
ARGS="--ws 127.0.0.1:18200 --quic 127.0.0.1:18201 --ops 127.0.0.1:18202 --data-dir $OUT/data"
export FERRY_UPGRADE_RECONNECT_RATE=$RECONNECT_RATE
$G $ARGS >"$OUT/old.ready" 2>"$OUT/old.log" &
OLD=$!
for _ in $(seq 1 100); do grep -q ready "$OUT/old.ready" 2>/dev/null && break; sleep 0.1; done
case $TRANSPORT in
  ws) TARGET=(--url ws://127.0.0.1:18200/ws) ;;
  quic) TARGET=(--transport quic --url quic://127.0.0.1:18201 --ca "$OUT/data/dev-cert.pem") ;;
  *) echo "TRANSPORT must be ws or quic" >&2; exit 2 ;;
esac
$L echo "${TARGET[@]}" --sessions "$SESSIONS" --rate "$RATE" --duration "$DURATION" \
  --connect-rate 5000 --json "$OUT/loadtest.json" \
  --report "$OUT/report.html" --marks "$MARKS" >"$OUT/loadtest.out" 2>&1 &
LT=$!
sleep "$AT"
mark "upgrade starts: gateway --takeover"
$G $ARGS --takeover >"$OUT/new.ready" 2>"$OUT/new.log" &
NEW=$!
# The new process's ready line (it has the sockets); bounded to 60 s.
(for _ in $(seq 1 600); do
   grep -q ready "$OUT/new.ready" 2>/dev/null && { mark "new process ready"; break; }
   sleep 0.1
 done) &
WATCH=$!
OLD_STATUS=0; wait $OLD || OLD_STATUS=$?
mark "upgrade ends: the old process exited ($OLD_STATUS)"
wait $WATCH 2>/dev/null || true
LT_STATUS=0; wait $LT || LT_STATUS=$?
kill $NEW 2>/dev/null || true; wait $NEW 2>/dev/null || true
strip() { sed 's/\x1b\[[0-9;]*m//g' "$1"; }
echo "== load tester ($TRANSPORT, $SESSIONS sessions x $RATE msg/s, takeover at ${AT}s, reconnect rate $RECONNECT_RATE/s)"
grep -E "sessions|messages|latency|send lag|connections|errors" "$OUT/loadtest.out"
echo "== handover (old process)"
strip "$OUT/old.log" | grep -E "taking over|sending state|handed over|failed" || true
echo "== new process"
strip "$OUT/new.log" | grep -E "received the listening|took over|error" || true
echo "old process exit: $OLD_STATUS; load tester exit: $LT_STATUS (0 = nothing lost, duplicated or reordered)"
echo "report: $OUT/report.html (the timeline marks the upgrade window)"
echo "files: $OUT"
