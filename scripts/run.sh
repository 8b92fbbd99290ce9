#!/usr/bin/env bash
# Runs ABStore locally with no cluster: a Redis primary, two replicas and three sentinels as local
# processes on loopback, then records and reads A/B events through the `abstore` library.
# Extra arguments go to the demo (try --help).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-test-deps.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/abstore/target}"
exec cargo run --quiet --locked -p abstore-tests --bin abstore-demo -- "$@"
