#!/usr/bin/env bash
# The whole test suite: the Rust workspace, then the Node and browser suites.
# `.ci/run` installs what these need (Chromium from Debian, npm packages from
# their lockfiles) and then calls this script.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo test --workspace"
cargo test --workspace
