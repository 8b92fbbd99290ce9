#!/usr/bin/env bash
# Copies the workspace's manifests (Cargo.toml files, Cargo.lock) from SRC to OUT with a stub for
# every build target they declare or cargo discovers (src/lib.rs, src/main.rs, src/bin/*, benches/*).
# The Dockerfile builds its dependencies on this skeleton, so that layer is rebuilt only when a
# manifest or the lock file changes, not on every change to our own code.
# Usage: images/skeleton.sh SRC OUT
set -euo pipefail
if [ $# -ne 2 ]; then
  echo "usage: $0 SRC OUT" >&2
  exit 2
fi
src=$(cd "$1" && pwd)
out=$2
mkdir -p "$out"
cp "$src/Cargo.toml" "$src/Cargo.lock" "$out/"
# Every package of the workspace: the top-level directories with a Cargo.toml.
for manifest in "$src"/*/Cargo.toml; do
  package=$(basename "$(dirname "$manifest")")
  mkdir -p "$out/$package"
  cp "$manifest" "$out/$package/"
  (
    cd "$src/$package"
    find src benches -type f -name '*.rs' \
      \( -path src/lib.rs -o -path src/main.rs -o -path 'src/bin/*' -o -path 'benches/*' \) \
      2>/dev/null || true
  ) | while read -r target; do
    mkdir -p "$(dirname "$out/$package/$target")"
    case $target in
      src/lib.rs) : >"$out/$package/$target" ;;
      *) echo 'fn main() {}' >"$out/$package/$target" ;;
    esac
  done
done
