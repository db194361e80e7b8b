# catalogd - thin wrapper over CMake. `make run` and `make test` do all
# set-up themselves (Debian 12 packages via scripts/install-deps.sh).
BUILD ?= build
CMAKE_FLAGS ?= -DCMAKE_BUILD_TYPE=RelWithDebInfo
JOBS ?= $(shell nproc)
CTEST_FLAGS ?= --output-on-failure --timeout 600

.PHONY: all deps deps-build build run test test-asan test-tsan test-fuzz soak bench bench-full fmt lint lint-format clean

all: build

deps:
	scripts/install-deps.sh all

deps-build:
	scripts/install-deps.sh build

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) $(CMAKE_FLAGS)

build: deps-build $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j$(JOBS)

# Serves the embedded demo catalog, or DATABASE_URL / KAFKA_* if set (the
# binary itself never falls back to the demo: SYNC_MODE=demo asks for it).
run: build
	@if [ -z "$$SYNC_MODE$$DATABASE_URL$$KAFKA_BOOTSTRAP_SERVERS" ]; then export SYNC_MODE=demo; fi; \
	GRPC_REFLECTION=$${GRPC_REFLECTION:-true} exec $(BUILD)/catalogd

test: deps
	$(MAKE) build
	cd $(BUILD) && ctest $(CTEST_FLAGS) -j2

# The whole suite under AddressSanitizer + UndefinedBehaviorSanitizer.
test-asan: deps
	$(MAKE) build BUILD=build-asan CMAKE_FLAGS="-DCMAKE_BUILD_TYPE=Debug -DCATALOGD_SANITIZE=address"
	cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:quarantine_size_mb=64 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  ABUSE_MAX_RSS_MB=3072 ABUSE_PROGRESS_TIMEOUT_S=60 FAULTS_GRACE_S=40 PEER_RSS_GROWTH_SHARE=4 \
	  ctest $(CTEST_FLAGS) -j2 -LE nosan

# The concurrency tests under ThreadSanitizer: the store's readers and writer,
# and the instrumented server under the torn-read test. The uninstrumented
# gRPC core, abseil and librdkafka: see tests/tsan/tsan.supp and
# tests/tsan/c11_threads.c.
test-tsan: deps
	$(MAKE) build BUILD=build-tsan CMAKE_FLAGS="-DCMAKE_BUILD_TYPE=Debug -DCATALOGD_SANITIZE=thread"
	cd build-tsan && TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 suppressions=$(CURDIR)/tests/tsan/tsan.supp" \
	  ctest $(CTEST_FLAGS) -j2 -L concurrency

# libFuzzer targets (clang, ASan+UBSan, coverage on the library too): the
# regressions, then each target for a bounded time (tests/fuzz/run.sh).
test-fuzz: deps
	$(MAKE) build BUILD=build-fuzz CMAKE_FLAGS="-DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=Debug \
	  -DCATALOGD_FUZZ=ON -DCATALOGD_SANITIZE=address -DCMAKE_C_FLAGS=-O1\ -fsanitize=fuzzer-no-link"
	cd build-fuzz && ctest $(CTEST_FLAGS) -L fuzz

bench: build
	scripts/install-deps.sh bench
	bench/run.sh short

bench-full: build
	scripts/install-deps.sh bench
	bench/run.sh full

# 30 minutes (SOAK_MINUTES) at 70% of max load with 500 events/s (not in CI).
soak: build
	/usr/bin/python3 bench/soak.py --build $(BUILD)

fmt:
	clang-format -i $$(git ls-files '*.c' '*.h')

# lint-format: every C file as clang-format would write it.
lint-format:
	clang-format --dry-run --Werror $$(git ls-files '*.c' '*.h')

# lint: the format check, then clang-tidy (.clang-tidy: function size caps as
# errors, bug-prone patterns and the static analyzer as warnings) on every
# product file, sub-folders included, with the build's compile commands (the
# generated headers must exist: build).
# A quoted include that climbs out of its folder ("../x.h") would step around
# the rooms' include paths (docs/ARCHITECTURE.md, Rooms): refused.
lint: lint-format build
	@if git grep -n '^[[:space:]]*#[[:space:]]*include[[:space:]]*"\.\./' -- src sync include; then \
	  echo 'lint: an #include climbs out of its folder (use the room'"'"'s include path)'; exit 1; fi
	clang-tidy -p $(BUILD) --quiet $$(git ls-files 'src/*.c' 'sync/*.c')

clean:
	rm -rf build build-asan build-tsan build-fuzz
