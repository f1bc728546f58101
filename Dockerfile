# syntax=docker/dockerfile:1
# Build: docker build -t jwks-edge .
# Run:   docker run -v $PWD/config.toml:/etc/jwks-edge/config.toml:ro -p 8443:8443 jwks-edge

FROM rust:1-slim-bookworm AS build
WORKDIR /src
# Dependencies first, so that source edits do not rebuild them. Cargo refuses a manifest
# whose declared targets have no file, so every target gets a stub: the library, the
# binary, and each [[bench]] named in Cargo.toml (the sed prints their names). The bench
# stubs stay: `cargo build` never builds benches, so the real ones are not copied and
# editing them rebuilds nothing. CI replays this stage on exactly these files
# (tests/integration/dockerfile.rs).
COPY Cargo.toml Cargo.lock ./
RUN mkdir src benches && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && for bench in $(sed -n '/^\[\[bench\]\]/,/^name/s/^name *= *"\(.*\)"/\1/p' Cargo.toml); do \
         echo 'fn main() {}' > "benches/$bench.rs"; \
       done \
    && cargo build --release --locked && rm -rf src
COPY src ./src
RUN touch src/main.rs src/lib.rs && cargo build --release --locked \
    && strip target/release/jwks-edge

# distroless/cc: glibc and nothing else (no shell, no package manager); runs as uid 65532.
# The upstream trust store is compiled in (webpki-roots), so no CA bundle is needed.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/jwks-edge /usr/local/bin/jwks-edge
USER nonroot:nonroot
EXPOSE 8443 9090
ENV JWKS_EDGE_CONFIG=/etc/jwks-edge/config.toml
# The image has no shell or curl: the binary checks its own admin listener.
HEALTHCHECK --interval=10s --timeout=5s --start-period=5s --retries=3 \
    CMD ["/usr/local/bin/jwks-edge", "healthcheck", "--url", "http://127.0.0.1:9090/healthz"]
ENTRYPOINT ["/usr/local/bin/jwks-edge"]
CMD ["serve"]
