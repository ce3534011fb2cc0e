#!/usr/bin/env bash
# The whole test suite: the Rust workspace, then the Node and browser suites.
# `.ci/run` installs what these need (Chromium from Debian, npm packages from
# their lockfiles) and then calls this script.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo test --workspace"
cargo test --workspace

echo "== browser tests (tests/browser: Chromium + playwright-core)"
# They drive the binaries cargo built above (target/debug/gateway and
# target/debug/loadtest, or FERRY_GATEWAY / FERRY_LOADTEST); screenshots go
# to tests/browser/artifacts (or ARTIFACTS_DIR).
cargo build -q -p gateway -p loadtest
(cd tests/browser && npm test)

echo "== TypeScript SDK (clients/typescript): tsc --strict, vectors, Node and headless Chromium end-to-end"
# The end-to-end tests start target/debug/gateway (or FERRY_GATEWAY_BIN).
cargo build -p gateway
(cd clients/typescript && npm run build && npm test)
