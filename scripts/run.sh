#!/usr/bin/env bash
# Runs ABStore locally with no cluster: `abstore-operator local up` turns an ABStore YAML (by
# default charts/abstore-operator/examples/local.yaml) into a Redis primary, two replicas and three
# sentinels as local processes on loopback, with ACL users, AOF persistence, backup and prune
# on the store's schedules and the tracking API (abstore-api), and keeps healing it until Ctrl-C.
# Installs Redis when it is missing. Extra arguments go to `local up` (-f FILE, --dir DIR); the
# store lives in .abstore-local/ and comes back with its data on the next run.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-run-deps.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/abstore/target}"
cargo build --quiet --locked -p abstore-operator -p abstore-jobs -p abstore-api
export ABSTORE_LOCAL_FILE="${ABSTORE_LOCAL_FILE:-charts/abstore-operator/examples/local.yaml}"
export ABSTORE_LOCAL_DIR="${ABSTORE_LOCAL_DIR:-.abstore-local}"
exec "$CARGO_TARGET_DIR/debug/abstore-operator" local up "$@"
