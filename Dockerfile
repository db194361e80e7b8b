# catalogd container image.
#
#   docker build -t catalogd:dev .
#
# Stage 1 builds the binary on Debian 12; stage 2 is debian:12-slim with only
# the shared libraries the binary links (tests/helm/check_runtime_libs.sh
# checks that list against `ldd build/catalogd`).
#
# Base images by digest: a tag moves, a digest does not. Where the build host
# can reach the registry, pin both stages (docs/operations.md, "Container
# image", says how to read the digests and when to refresh them):
#   docker build \
#     --build-arg BUILD_IMAGE=debian:12@sha256:<digest> \
#     --build-arg RUNTIME_IMAGE=debian:12-slim@sha256:<digest> \
#     --build-arg CATALOGD_VERSION=0.1.0 --build-arg CATALOGD_COMMIT=$(git rev-parse HEAD) .
ARG BUILD_IMAGE=debian:12
ARG RUNTIME_IMAGE=debian:12-slim

FROM ${BUILD_IMAGE} AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      build-essential cmake pkg-config libgrpc-dev protobuf-compiler \
      protobuf-c-compiler libprotobuf-c-dev uthash-dev libpq-dev liburcu-dev \
      librdkafka-dev libjansson-dev libmicrohttpd-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# The commit `catalogd --version` and /metrics report (.git is not sent):
#   docker build --build-arg CATALOGD_COMMIT=$(git rev-parse --short HEAD) .
ARG CATALOGD_COMMIT=unknown
# tests/ is not sent (.dockerignore) and not built: the image needs no test libraries.
RUN cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DCATALOGD_TESTS=OFF \
      -DCATALOGD_COMMIT="$CATALOGD_COMMIT" \
 && cmake --build build -j --target catalogd

FROM ${RUNTIME_IMAGE}
# OCI annotations (docker inspect, registries, scanners).
ARG CATALOGD_VERSION=0.1.0
ARG CATALOGD_COMMIT=unknown
ARG CATALOGD_SOURCE=""
# SPDX expression; NOASSERTION until the project states its licence.
ARG CATALOGD_LICENSES=NOASSERTION
LABEL org.opencontainers.image.title="catalogd" \
      org.opencontainers.image.description="catalog.CatalogService answered from memory (gRPC)" \
      org.opencontainers.image.version="${CATALOGD_VERSION}" \
      org.opencontainers.image.revision="${CATALOGD_COMMIT}" \
      org.opencontainers.image.source="${CATALOGD_SOURCE}" \
      org.opencontainers.image.licenses="${CATALOGD_LICENSES}"
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      ca-certificates libgrpc29 libprotobuf-c1 libpq5 liburcu8 librdkafka1 \
      libjansson4 libmicrohttpd12 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 catalogd \
 && useradd --system --uid 10001 --gid 10001 --no-create-home \
      --home-dir /nonexistent --shell /usr/sbin/nologin catalogd
COPY --from=build /src/build/catalogd /usr/local/bin/catalogd
USER 10001:10001
# The heap on transparent huge pages, set here so that catalogd does not
# re-execute itself to set it (one exec and dynamic link fewer, ~30 ms of
# every start-up: docs/performance.md, "The heap on transparent huge pages").
ENV GRPC_PORT=50052 \
    ADMIN_PORT=9090 \
    GLIBC_TUNABLES=glibc.malloc.hugetlb=1
EXPOSE 50052 9090
STOPSIGNAL SIGTERM
# docker / compose health without extra binaries: one gRPC health Check over
# loopback, configured by the same environment (GRPC_PORT, the TLS files).
# Kubernetes ignores HEALTHCHECK and uses the chart's probes.
HEALTHCHECK --interval=10s --timeout=5s --start-period=120s --retries=3 \
  CMD ["/usr/local/bin/catalogd", "--probe"]
ENTRYPOINT ["/usr/local/bin/catalogd"]
