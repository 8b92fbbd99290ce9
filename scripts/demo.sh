#!/usr/bin/env bash
# The library demo: starts its own Redis primary, two replicas and three sentinels as local
# processes on loopback, then records and reads A/B events through the `abstore` library.
# Extra arguments go to the demo (try --help).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-run-deps.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/abstore/target}"
exec cargo run --quiet --locked -p abstore-tests --bin abstore-demo -- "$@"
