#!/usr/bin/env bash
# The one command that runs every check on a fresh machine: installs test dependencies, then
# format, lints, the container images (scripts/build-images.sh) and the whole test suite (unit
# tests, integration tests against real redis-server / redis-sentinel processes started on
# loopback by the test harness, the images' binaries run under runc, and the end-to-end tests
# against a real Kubernetes started from ../shared/k8s).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-test-deps.sh

# Keep build products outside the clone so fresh clones (CI) rebuild incrementally.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/abstore/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# Incremental caches are keyed by the clone's path, so a fresh clone never reuses them: they only
# cost disk. Earlier runs' artifacts are pruned first for the same reason (scripts/prune-target.sh).
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
scripts/prune-target.sh

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# The release images as OCI archives in $CARGO_TARGET_DIR/images, which tests/tests/images.rs
# checks and runs (it fails, never skips, without them). A release build into the persistent
# target directory, so later runs rebuild only what changed.
scripts/build-images.sh

# A real Kubernetes for the end-to-end tests (scripts/k8s-cluster.sh): started here, stopped on exit.
. scripts/k8s-cluster.sh
abstore_k8s_up

# --no-fail-fast: one failing test binary must not hide the results of the others; the command
# still exits non-zero when any test failed.
cargo test --workspace --locked --no-fail-fast
