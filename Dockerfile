# syntax=docker/dockerfile:1
# The three release images, one target each:
#   docker buildx build --target operator --build-arg VERSION="$(scripts/version.sh)" \
#     --build-arg REVISION="$(git rev-parse HEAD)" -t ghcr.io/abstore/abstore-operator:<version> .
#   (the same with --target jobs and ghcr.io/abstore/abstore-jobs:<version>, --target api and
#   ghcr.io/abstore/abstore-api:<version>)
# Their runtime root filesystem is images/runtime-files.txt, assembled by images/rootfs.sh; the
# daemonless build (scripts/build-images.sh) uses the same list and script, and the same
# entrypoint, user, PATH and labels, checked by tests/tests/images.rs. See docs/images.md.

# The builder: Debian bookworm with the pinned Rust release. A mirror can replace it
# (--build-arg RUST_IMAGE=registry.example.com/library/rust:1.95.0-bookworm); its Debian packages
# are also what the runtime's libraries and certificates are copied from.
ARG RUST_IMAGE=docker.io/library/rust:1.95.0-bookworm

# Manifests and stub targets only, so the dependency layer below is rebuilt when Cargo.toml or
# Cargo.lock change, not when our own code does.
FROM ${RUST_IMAGE} AS skeleton
WORKDIR /src
COPY . .
RUN images/skeleton.sh /src /skeleton

FROM ${RUST_IMAGE} AS builder
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
WORKDIR /build
COPY --from=skeleton /skeleton/ ./
RUN cargo build --release --locked -p abstore-operator -p abstore-jobs -p abstore-api
# Our crates (the tests crate stays a skeleton: it is not part of the images). The sources are
# touched because their copied mtimes can be older than the stub build's artifacts.
COPY abstore abstore
COPY operator operator
COPY jobs jobs
COPY api api
COPY images images
COPY scripts/version.sh scripts/version.sh
# The version label must be the crates' version: the build fails on any other VERSION.
ARG VERSION
RUN if [ "${VERSION}" != "$(scripts/version.sh)" ]; then \
      echo "VERSION='${VERSION}' is not the workspace version $(scripts/version.sh): pass --build-arg VERSION=\"\$(scripts/version.sh)\"" >&2; \
      exit 1; \
    fi \
 && find abstore operator jobs api -name '*.rs' -exec touch {} + \
 && cargo build --release --locked -p abstore-operator -p abstore-jobs -p abstore-api \
 && images/rootfs.sh images/runtime-files.txt /rootfs/operator target/release/abstore-operator \
 && images/rootfs.sh images/runtime-files.txt /rootfs/jobs target/release/abstore-jobs \
 && images/rootfs.sh images/runtime-files.txt /rootfs/api target/release/abstore-api

# The runtime images: nothing but the root filesystem from the list and the binary. No shell, no
# package manager; user nonroot (65532) from images/passwd; every file root-owned, so a read-only
# root filesystem changes nothing.
FROM scratch AS operator
ARG VERSION
ARG REVISION=unknown
COPY --from=builder /rootfs/operator/ /
COPY --from=builder /build/target/release/abstore-operator /usr/local/bin/abstore-operator
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/abstore-operator"]
LABEL org.opencontainers.image.title="abstore-operator" \
      org.opencontainers.image.description="The ABStore Kubernetes operator" \
      org.opencontainers.image.source="https://github.com/abstore/abstore" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"

FROM scratch AS jobs
ARG VERSION
ARG REVISION=unknown
COPY --from=builder /rootfs/jobs/ /
COPY --from=builder /build/target/release/abstore-jobs /usr/local/bin/abstore-jobs
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/abstore-jobs"]
LABEL org.opencontainers.image.title="abstore-jobs" \
      org.opencontainers.image.description="ABStore backup, restore, verify, list and prune" \
      org.opencontainers.image.source="https://github.com/abstore/abstore" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"

FROM scratch AS api
ARG VERSION
ARG REVISION=unknown
COPY --from=builder /rootfs/api/ /
COPY --from=builder /build/target/release/abstore-api /usr/local/bin/abstore-api
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/abstore-api"]
LABEL org.opencontainers.image.title="abstore-api" \
      org.opencontainers.image.description="The ABStore tracking API, Lamed-compatible" \
      org.opencontainers.image.source="https://github.com/abstore/abstore" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"

# The release binaries alone, for the GitHub release (.github/workflows/release.yml):
#   docker buildx build --target binaries --build-arg VERSION="$(scripts/version.sh)" --output type=local,dest=dist .
# glibc-dynamic, built on Debian bookworm: they run on Linux with glibc 2.36 or newer.
FROM scratch AS binaries
COPY --from=builder /build/target/release/abstore-operator /build/target/release/abstore-jobs /build/target/release/abstore-api /
