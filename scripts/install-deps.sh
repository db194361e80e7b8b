#!/bin/sh
# Installs the Debian 12 packages catalogd needs to build, run and test.
# Idempotent: packages already present are skipped, so a second run is a
# no-op that never touches the network.
#
# Usage: scripts/install-deps.sh [build|test|bench|all]   (default: all)
set -eu

build_pkgs="build-essential cmake pkg-config libgrpc-dev protobuf-compiler
  protobuf-c-compiler libprotobuf-c-dev uthash-dev libpq-dev liburcu-dev
  librdkafka-dev libjansson-dev libmicrohttpd-dev libcmocka-dev"
test_pkgs="postgresql python3 python3-grpcio python3-protobuf
  python3-grpc-tools python3-yaml kcat clang libclang-rt-14-dev clang-format clang-tidy
  openssl unzip prometheus"

bench_pkgs="nghttp2-client gnuplot-nox python3-asyncpg linux-perf valgrind"

case "${1:-all}" in
  build) want="$build_pkgs" ;;
  test|all) want="$build_pkgs $test_pkgs" ;;
  bench) want="$build_pkgs $test_pkgs $bench_pkgs" ;;
  *) echo "usage: $0 [build|test|bench|all]" >&2; exit 2 ;;
esac

missing=""
for p in $want; do
  if ! dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q 'ok installed'; then
    missing="$missing $p"
  fi
done

# npm (for the helm and buf test clients) may come with a non-Debian nodejs;
# only ask apt for it when there is no npm command at all.
case "${1:-all}" in
  test|all|bench) command -v npm >/dev/null 2>&1 || missing="$missing nodejs npm" ;;
esac

if [ -z "$missing" ]; then
  echo "install-deps: all packages present"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: missing:$missing (run as root, or install them)" >&2
  exit 1
fi

echo "install-deps: installing:$missing"
export DEBIAN_FRONTEND=noninteractive
# The packages bring servers (prometheus for promtool, postgresql for initdb)
# whose post-install scripts would start system services: the tests start
# their own, so none is started here (policy-rc.d, unless the host has one).
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
  chmod 755 /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing
