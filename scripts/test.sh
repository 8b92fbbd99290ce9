#!/usr/bin/env bash
# The one command that runs every check on a fresh machine: installs test dependencies, then
# format, lints and the whole test suite (unit tests and integration tests against real
# redis-server / redis-sentinel processes started on loopback by the test harness).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-test-deps.sh

# Keep build products outside the clone so fresh clones (CI) rebuild incrementally.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/abstore/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
