#!/usr/bin/env bash
# Keeps a persistent CARGO_TARGET_DIR from filling the disk. Cargo names a workspace crate's
# artifacts after its path, so every fresh clone in a new directory (CI) leaves a whole new set of
# test binaries and libraries behind (a CI run once failed with "No space left on device").
#
# In <target>/{debug,release}/deps this removes every workspace artifact (test and bin executables,
# libabstore*.rlib/.rmeta and their .d files) except the newest of each name, object files left by
# interrupted links, and the incremental caches. Third-party crates' artifacts are kept, so the next build stays warm.
# Usage: scripts/prune-target.sh [target-dir]   (default: $CARGO_TARGET_DIR)
set -euo pipefail
target="${1:-${CARGO_TARGET_DIR:?set CARGO_TARGET_DIR or pass the target directory}}"

keep_newest() { # <regex for the name> <suffix>: in the current directory
  local suffix_re="${2//./\\.}"
  find . -maxdepth 1 -type f -regextype posix-extended -regex "\./$1-[0-9a-f]{16}$suffix_re" -printf '%f\n' |
    sed -E "s/-[0-9a-f]{16}$suffix_re\$//" | sort | uniq -d |
    while read -r name; do
      ls -t -- "$name"-????????????????"$2" | tail -n +2 | xargs -r rm -f --
    done
}

for profile_dir in "$target/debug" "$target/release"; do
  [ -d "$profile_dir/deps" ] || continue
  rm -rf "$profile_dir/incremental"
  (
    cd "$profile_dir/deps"
    keep_newest '[a-z0-9_]+' ''          # executables: only workspace tests and bins live here
    keep_newest 'abstore[a-z0-9_]*' '.d'
    keep_newest 'libabstore[a-z0-9_]*' '.rlib'
    keep_newest 'libabstore[a-z0-9_]*' '.rmeta'
    find . -maxdepth 1 -type f -name '*.rcgu.o' -delete  # left behind by interrupted links
  )
done
