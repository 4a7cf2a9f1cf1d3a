# syntax=docker/dockerfile:1
# The idbind operator image: one static binary on distroless, running as non-root.
#
#   docker build -t <registry>/idbind:<tag> .
#
# Stage 1 builds on Alpine, whose Rust targets musl and links statically by default, so the
# binary needs no libc at run time. TLS is rustls with the ring provider (no OpenSSL); ring's C
# and assembly parts need only gcc and the musl headers.
FROM rust:1.95-alpine AS build
RUN apk add --no-cache musl-dev
WORKDIR /src
COPY . .
# The cache mounts keep the registry and compiled dependencies between builds (BuildKit); the
# binary is copied out because the target folder is a cache, not part of the layer.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin idbind --target x86_64-unknown-linux-musl \
    && cp target/x86_64-unknown-linux-musl/release/idbind /idbind
# Fail the build, not the pod, if anything made the binary dynamic.
RUN apk add --no-cache file && file /idbind | tee /dev/stderr | grep -q 'static'

# Stage 2: CA certificates, /etc/passwd with the nonroot user, nothing else (no shell).
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /idbind /usr/local/bin/idbind
# 65532 is distroless' nonroot; numeric so Kubernetes' runAsNonRoot can verify it without
# reading /etc/passwd.
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/idbind"]
CMD ["run"]
