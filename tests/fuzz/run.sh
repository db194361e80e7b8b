#!/usr/bin/env bash
# Runs every fuzz target for a bounded time; builds nothing.
#
#   tests/fuzz/run.sh [seconds-per-target] [build-dir]
#
# seconds-per-target defaults to 60; build-dir to $CATALOGD_FUZZ_BUILD or
# ./build-fuzz (configured with -DCATALOGD_FUZZ=ON, see tests/fuzz/README.md).
# Each target first replays its regressions/ inputs (each must run clean),
# then fuzzes a temporary copy of corpus/ + regressions/ (the checked-in
# corpus is never modified) with its dictionary. Exits non-zero if any
# target crashes, leaks, times out, trips a sanitizer or a harness check;
# the reproducer is kept and its path printed. FUZZ_TARGETS="a b" limits the
# run to some targets; FUZZ_KEEP=1 keeps the temporary directory;
# FUZZ_KNOWN="org-slash" makes the harnesses skip a known, reported finding
# (see README.md) while it is open.
set -u
here=$(cd "$(dirname "$0")" && pwd)
secs=${1:-60}
build=${2:-${CATALOGD_FUZZ_BUILD:-build-fuzz}}
targets=${FUZZ_TARGETS:-"fuzz_event_decode fuzz_copy_row fuzz_rpc fuzz_checkpoint"}

case $secs in '' | *[!0-9]*) echo "run.sh: seconds must be a number" >&2; exit 2 ;; esac

# Sanitizer settings: stop at the first report, with a stack, and check leaks.
# A 64 MiB quarantine (default 256) still catches use-after-free of these
# small objects and keeps pages warm: fuzz_copy_row runs about twice as fast.
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1:allocator_may_return_null=1:quarantine_size_mb=64}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

work=$(mktemp -d "${TMPDIR:-/tmp}/catalogd-fuzz.XXXXXX")
status=0
summary=""

for t in $targets; do
  bin=$build/tests/fuzz/$t
  if [ ! -x "$bin" ]; then
    echo "run.sh: $bin not built (configure with -DCATALOGD_FUZZ=ON and build it)" >&2
    status=1
    summary+="$t: NOT BUILT"$'\n'
    continue
  fi
  dir=$work/$t
  mkdir -p "$dir/corpus" "$dir/artifacts"
  cp -R "$here/corpus/$t/." "$dir/corpus/" 2>/dev/null
  regs=()
  if [ -d "$here/regressions/$t" ]; then
    for f in "$here/regressions/$t"/*; do [ -f "$f" ] && regs+=("$f"); done
  fi
  dict=()
  [ -f "$here/dict/$t.dict" ] && dict=("-dict=$here/dict/$t.dict")
  common=(-timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=1024 -max_len=8192
          "-artifact_prefix=$dir/artifacts/")

  # 1. Regressions: every saved crash input must now run clean.
  if [ ${#regs[@]} -gt 0 ]; then
    echo "== $t: ${#regs[@]} regression input(s)"
    if ! "$bin" "${common[@]}" "${regs[@]}" >"$dir/regressions.log" 2>&1; then
      echo "run.sh: $t: a regression input still fails:" >&2
      grep -E "ERROR|SUMMARY|check failed|Running:|#[0-9]+ " "$dir/regressions.log" | head -40 >&2
      status=1
      summary+="$t: REGRESSION FAILS (log: $dir/regressions.log)"$'\n'
      continue
    fi
    cp "${regs[@]}" "$dir/corpus/"
  fi

  # 2. Bounded fuzzing from the corpus.
  echo "== $t: fuzzing for ${secs}s"
  "$bin" "${common[@]}" "${dict[@]}" -max_total_time="$secs" -print_final_stats=1 \
    "$dir/corpus" >"$dir/fuzz.log" 2>&1
  rc=$?
  stats=$(grep -E "^(#[0-9]+.*DONE|stat::number_of_executed_units|stat::average_exec_per_sec)" \
    "$dir/fuzz.log" | tr '\n' ' ')
  crash=$(find "$dir/artifacts" -type f 2>/dev/null | head -1)
  if [ $rc -ne 0 ] || [ -n "$crash" ]; then
    echo "run.sh: $t: FAILED (exit $rc)" >&2
    grep -E "ERROR|SUMMARY|check failed|runtime error|==[0-9]+==" "$dir/fuzz.log" | head -20 >&2
    echo "run.sh: reproducer: ${crash:-none}; log: $dir/fuzz.log" >&2
    echo "run.sh: reproduce with: $bin ${crash:-<input>}" >&2
    status=1
    summary+="$t: FAILED ($crash)"$'\n'
  else
    summary+="$t: ok $stats"$'\n'
  fi
done

echo "== summary"
printf '%s' "$summary"
if [ $status -eq 0 ] && [ -z "${FUZZ_KEEP:-}" ]; then
  rm -rf "$work"
else
  echo "run.sh: files kept in $work"
fi
exit $status
