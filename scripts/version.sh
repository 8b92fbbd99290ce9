#!/usr/bin/env bash
# Prints the release version: `version` of [workspace.package] in Cargo.toml, the one place it is
# written. The crates inherit it, the operator's default jobs image tag is built from it
# (env!("CARGO_PKG_VERSION")), the images' version label comes from it (scripts/build-images.sh,
# the Dockerfile's VERSION argument) and tests/tests/images.rs fails when the chart's version or
# appVersion differ from it.
set -euo pipefail
cd "$(dirname "$0")/.."
version=$(sed -n '/^\[workspace\.package\]/,/^\[/ s/^version *= *"\([^"]*\)".*/\1/p' Cargo.toml)
if [ -z "$version" ]; then
  echo "version.sh: no version in the [workspace.package] table of Cargo.toml" >&2
  exit 1
fi
echo "$version"
