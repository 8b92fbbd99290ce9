#!/usr/bin/env bash
# Builds the abstore-operator, abstore-jobs and abstore-api images as OCI archives without a
# container daemon and without pulling anything: the release binaries, and the runtime root filesystem of
# images/runtime-files.txt assembled by images/rootfs.sh from this Debian bookworm machine's
# packages -- the same list and script the Dockerfile's builder stage runs, with the same
# entrypoint, user, PATH and labels (tests/tests/images.rs checks both agree). umoci writes the
# layers; each archive names its image in full, so `ctr images import` and
# `../shared/k8s/k8s.sh images-import` need no --base-name.
#
# Prints the archive paths: <out>/abstore-operator-<version>.oci.tar,
# <out>/abstore-jobs-<version>.oci.tar and <out>/abstore-api-<version>.oci.tar, where <out> is
# $ABSTORE_IMAGES_DIR, by default $CARGO_TARGET_DIR/images (CARGO_TARGET_DIR defaults to
# ~/.cache/abstore/target, as in scripts/test.sh). Needs umoci and jq (scripts/install-test-deps.sh installs them).
# Usage: scripts/build-images.sh
set -euo pipefail
cd "$(dirname "$0")/.."
# Directories created here are 0755 in the layers, whatever the caller's umask.
umask 022

registry=ghcr.io/abstore
images=(abstore-operator abstore-jobs abstore-api)
# The image config every image gets; the Dockerfile's runtime stages say the same.
path_env=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
user=65532:65532
declare -A descriptions=(
  [abstore-operator]="The ABStore Kubernetes operator"
  [abstore-jobs]="ABStore backup, restore, verify, list and prune"
  [abstore-api]="The ABStore tracking API, Lamed-compatible"
)

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/abstore/target}"
out="${ABSTORE_IMAGES_DIR:-$CARGO_TARGET_DIR/images}"

missing=()
for tool in umoci jq tar ldd dpkg-query; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "build-images: missing ${missing[*]} (scripts/install-test-deps.sh installs them)" >&2
  exit 1
fi

version=$(scripts/version.sh)
source_url=$(sed -n '/^\[workspace\.package\]/,/^\[/ s/^repository *= *"\([^"]*\)".*/\1/p' Cargo.toml)
license=$(sed -n '/^\[workspace\.package\]/,/^\[/ s/^license *= *"\([^"]*\)".*/\1/p' Cargo.toml)
revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
# Timestamps from the commit, so a rebuild of the same commit gives the same layers.
epoch=$(git log -1 --format=%ct 2>/dev/null || echo 0)
created=$(date -u -d "@$epoch" +%Y-%m-%dT%H:%M:%SZ)

cargo build --release --locked -p abstore-operator -p abstore-jobs -p abstore-api

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$out"

for name in "${images[@]}"; do
  binary="$CARGO_TARGET_DIR/release/$name"
  ref="$registry/$name:$version"
  layout="$work/$name/layout"
  image="$layout:$ref"
  archive="$out/$name-$version.oci.tar"

  images/rootfs.sh images/runtime-files.txt "$work/$name/rootfs" "$binary"
  install -D -m 0755 "$binary" "$work/$name/app/usr/local/bin/$name"

  # Two layers, as the Dockerfile's two COPY lines: the runtime files, then the binary. GNU tar
  # writes them (sorted, root-owned, the commit's timestamps), umoci adds them: umoci 0.4.7's own
  # `insert` leaves a layer's tar stream without its end (the last file is cut short).
  # Their top-level entries, not ".": the image's / keeps its own mode.
  for layer in rootfs app; do
    mapfile -t entries < <(ls -A "$work/$name/$layer")
    tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$epoch" \
      -C "$work/$name/$layer" -cf "$work/$name/$layer.tar" -- "${entries[@]}"
  done
  umoci init --layout "$layout"
  umoci new --image "$image"
  umoci raw add-layer --image "$image" --history.created "$created" \
    --history.created_by "images/rootfs.sh images/runtime-files.txt" "$work/$name/rootfs.tar"
  umoci raw add-layer --image "$image" --history.created "$created" \
    --history.created_by "$name" "$work/$name/app.tar"
  umoci config --image "$image" --no-history --created "$created" \
    --config.user "$user" \
    --config.entrypoint "/usr/local/bin/$name" \
    --config.env "$path_env" \
    --config.label "org.opencontainers.image.title=$name" \
    --config.label "org.opencontainers.image.description=${descriptions[$name]}" \
    --config.label "org.opencontainers.image.source=$source_url" \
    --config.label "org.opencontainers.image.licenses=$license" \
    --config.label "org.opencontainers.image.version=$version" \
    --config.label "org.opencontainers.image.revision=$revision"
  umoci gc --layout "$layout"
  # containerd names an imported image after io.containerd.image.name (as buildx's OCI output
  # does); org.opencontainers.image.ref.name (umoci's tag) already holds the full name as well.
  jq --arg ref "$ref" '.manifests |= map(.annotations["io.containerd.image.name"] = $ref)' \
    "$layout/index.json" >"$work/index.json"
  mv "$work/index.json" "$layout/index.json"

  tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$epoch" \
    -C "$layout" -cf "$archive.tmp" oci-layout index.json blobs
  mv "$archive.tmp" "$archive"
  echo "build-images: $ref -> $archive ($(du -h "$archive" | cut -f1))"
done
