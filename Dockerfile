# syntax=docker/dockerfile:1
# NOT BUILT HERE: this project has no container engine; `make image` (hack/image/build.sh) builds the
# image without one, and tests/image.rs runs that image as a container with runc. This Dockerfile is for
# users with Docker or BuildKit, and builds the same layout:
#
#   docker build -t <registry>/idbind:<tag> \
#     --build-arg REVISION=$(git rev-parse HEAD) --build-arg SOURCE_DATE_EPOCH=$(git log -1 --format=%ct) .
#
# The same files as `make image`, collected by the same script (hack/image/oci.py rootfs): the glibc
# release binary at /usr/local/bin/idbind, exactly the shared libraries ldd lists for it (glibc, libgcc_s,
# the loader: distroless/cc's runtime), the CA bundle, /etc/passwd and /etc/group with nonroot 65532; no
# shell. The same user, entrypoint, port and labels. The digest differs from `make image`'s (Docker writes
# its own config and layer), and the libraries are Debian 12's from the build stage.

# Stage 1: the release binary, on Debian 12 (bookworm) with glibc, as `make release` builds it.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# The cache mounts keep the registry and compiled dependencies between builds (BuildKit); the
# binary is copied out because the target folder is a cache, not part of the layer.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin idbind \
    && cp target/release/idbind /idbind
# The runtime files: the binary, its shared libraries, CA bundle, passwd/group, copyright notices
# (python3 runs the script; ldd and dpkg-query are in every Debian image).
RUN apt-get update && apt-get install -y --no-install-recommends python3 ca-certificates \
    && python3 hack/image/oci.py rootfs --binary /idbind --out /rootfs

# Stage 2: nothing but those files (distroless/cc-style: no shell, no package manager).
FROM scratch
COPY --from=build /rootfs/ /
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG SOURCE=
LABEL org.opencontainers.image.title="idbind" \
      org.opencontainers.image.description="Kubernetes operator that binds ServiceAccounts to Azure managed identities through workload identity federation" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="${SOURCE}"
ENV PATH=/usr/local/bin SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
# 65532 is distroless' nonroot; numeric so Kubernetes' runAsNonRoot can verify it without
# reading /etc/passwd.
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/idbind"]
CMD ["run"]
