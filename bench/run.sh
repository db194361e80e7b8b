#!/usr/bin/env bash
# Benchmarks of catalogd against its references (bench/README.md, docs/performance.md).
#   bench/run.sh short   (make bench)       <= 5 min, 100k-variant catalog
#   bench/run.sh full    (make bench-full)  the 1M-variant catalog of the issue
# Builds what is missing, then runs bench/bench.py, which starts and stops every process
# (PostgreSQL, Kafka mock, catalogd, references, load generator) and writes
# bench/results/<profile>.{json,md} and bench/results/<profile>-latency.png.
# Environment: BUILD (build directory, default build), BENCH_WORKDIR (raw runs and logs,
# default $BUILD/bench-work/<profile>).
set -euo pipefail
cd "$(dirname "$0")/.."
profile=${1:-short}
case "$profile" in short|full) ;; *) echo "usage: bench/run.sh short|full" >&2; exit 2 ;; esac
BUILD=${BUILD:-build}
for tool in h2load gnuplot psql; do
  command -v "$tool" >/dev/null || { echo "bench: $tool missing (scripts/install-deps.sh)" >&2; exit 1; }
done
/usr/bin/python3 -c 'import grpc, grpc_tools, asyncpg' 2>/dev/null ||
  { echo "bench: python3-grpcio, python3-grpc-tools, python3-asyncpg missing" >&2; exit 1; }
[ -f "$BUILD/CMakeCache.txt" ] || cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo
cmake --build "$BUILD" -j"$(nproc)" --target catalogd catalog-bench catalog-gen noop-server smap-lookup \
  kafka-mock-host kafka-produce

args=(--profile "$profile" --build "$BUILD")
[ -n "${BENCH_WORKDIR:-}" ] && args+=(--workdir "$BENCH_WORKDIR")
# Each driver stops everything it started when it gets SIGTERM (and on any exit).
# bench.py: latency, throughput, warm load, replay; lifecycle.py: start-up from checkpoints
# and peers, freshness (issues 13 and 14), into bench/results/<profile>-lifecycle.json.
for driver in bench/bench.py bench/lifecycle.py; do
  largs=("${args[@]}")
  [ "$driver" = bench/lifecycle.py ] && [ -n "${BENCH_WORKDIR:-}" ] &&
    largs=(--profile "$profile" --build "$BUILD" --workdir "$BENCH_WORKDIR-lifecycle")
  /usr/bin/python3 "$driver" "${largs[@]}" &
  pid=$!
  trap 'kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; exit 130' INT TERM
  wait "$pid"
done
