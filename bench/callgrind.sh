#!/usr/bin/env bash
# Instructions per encoded MESSAGE and per decoded PUBLISH, counted by
# valgrind's callgrind on bench/codec-micro (release build), so that the
# figures do not move with the machine's load.
#
#   bench/callgrind.sh          # N = 100000 frames per operation
#   N=1000000 bench/callgrind.sh
#
# Each operation runs twice, with N frames and with 0; the difference of the
# instruction counts divided by N removes start-up and set-up.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
N=${N:-100000}
command -v valgrind >/dev/null || { echo "callgrind: valgrind is not installed" >&2; exit 2; }
cargo build --release -q -p codec-micro || exit 2
BIN=target/release/codec-micro
OUT=$(mktemp -d "${TMPDIR:-/tmp}/ferry-callgrind.XXXXXX")
trap 'rm -rf "$OUT"' EXIT

ir() { # op n: total instructions of one run
  valgrind --tool=callgrind --callgrind-out-file="$OUT/$1.$2" "$BIN" "$1" "$2" >/dev/null 2>"$OUT/$1.$2.log" \
    || { echo "callgrind: $BIN $1 $2 failed, see $OUT/$1.$2.log" >&2; exit 2; }
  awk '/^(summary|totals):/ { print $2; exit }' "$OUT/$1.$2"
}

echo "| operation | instructions per frame (N = $N) |"
echo "|---|---:|"
for op in encode-message decode-publish; do
  full=$(ir "$op" "$N")
  base=$(ir "$op" 0)
  echo "| $op | $(awk -v a="$full" -v b="$base" -v n="$N" 'BEGIN { printf "%.1f", (a - b) / n }') |"
done
echo
echo "valgrind $(valgrind --version | sed 's/valgrind-//'), $(rustc --version)"
