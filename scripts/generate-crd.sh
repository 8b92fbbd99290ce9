#!/usr/bin/env bash
# Regenerates the chart's CRD from the Rust types (operator/src/crd.rs). The test
# `committed_crd_matches_the_generated_one` (tests/tests/crd.rs) fails until this has been run
# after a change to the CRD.
set -euo pipefail
cd "$(dirname "$0")/.."
out=charts/abstore-operator/crds/abstores.abstore.dev.yaml
cargo run --quiet --locked -p abstore-operator -- crd > "$out.tmp"
mv "$out.tmp" "$out"
echo "generate-crd: wrote $out"
