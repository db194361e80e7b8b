#!/usr/bin/env bash
# Checks that the runtime stage of the Dockerfile installs every shared
# library the catalogd binary needs: each library `ldd` resolves must belong
# to a Debian package that the runtime stage lists, or that one of those
# packages depends on (directly or not). Run it on Debian 12, where the binary
# was built against the same packages the image uses.
#
# Usage: check_runtime_libs.sh [BINARY] [DOCKERFILE]
#   BINARY      default: build/catalogd
#   DOCKERFILE  default: Dockerfile at the repository root
# Exit: 0 ok, 1 a library is not covered (or a listed package is unknown
# here), 77 skipped (no binary yet, or no ldd/dpkg on this machine).
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
BIN=${1:-$REPO/build/catalogd}
DOCKERFILE=${2:-$REPO/Dockerfile}

skip() { echo "runtime-libs: SKIP: $*" >&2; exit 77; }
fail() { echo "runtime-libs: FAIL: $*" >&2; exit 1; }

[ -f "$BIN" ] || skip "no binary at $BIN (build it first)"
for t in ldd dpkg dpkg-query; do
  command -v "$t" >/dev/null 2>&1 || skip "$t is not available (this check needs Debian)"
done
[ -f "$DOCKERFILE" ] || fail "no Dockerfile at $DOCKERFILE"

# --- packages the runtime stage installs --------------------------------
# The RUN after the last FROM that calls `apt-get install`; its package names
# are the words after the install options, up to the next `&&`.
listed=$(awk '
  /^[[:space:]]*FROM[[:space:]]/ { stage++; text[stage] = ""; next }
  { text[stage] = text[stage] " " $0 }
  END {
    s = text[stage]; gsub(/\\/, " ", s)
    i = index(s, "apt-get install"); if (i == 0) exit
    s = substr(s, i + length("apt-get install"))
    j = index(s, "&&"); if (j > 0) s = substr(s, 1, j - 1)
    n = split(s, w, /[[:space:]]+/)
    for (k = 1; k <= n; k++) if (w[k] != "" && w[k] !~ /^-/) print w[k]
  }' "$DOCKERFILE")
[ -n "$listed" ] || fail "found no apt-get install in the last stage of $DOCKERFILE"
echo "runtime-libs: runtime stage installs: $(tr "\n" " " <<<"$listed")"

# --- their dependency closure, from this machine's dpkg database ---------
# One dpkg-query for every package: status, provides, depends.
declare -A installed provider depends
while IFS='|' read -r pkg status provides dep predep; do
  case "$status" in *"ok installed"*) ;; *) continue ;; esac
  installed[$pkg]=1
  depends[$pkg]="$dep,$predep"
  IFS=',' read -ra pv <<<"$provides"
  for v in "${pv[@]}"; do
    v=${v%%(*}; v=${v// /}
    [ -n "$v" ] && provider[$v]="${provider[$v]:-} $pkg"
  done
done < <(dpkg-query -W -f '${Package}|${Status}|${Provides}|${Depends}|${Pre-Depends}\n' 2>/dev/null)

declare -A closure
missing_listed=""
queue=()
for p in $listed; do
  # Not installed here: its dependencies are unknown here, and it may be a
  # misspelt or wrong-version name. Reported as a failure below.
  if [ -n "${installed[$p]:-}" ]; then queue+=("$p")
  else missing_listed="$missing_listed $p"
  fi
done
while [ ${#queue[@]} -gt 0 ]; do
  p=${queue[0]}; queue=("${queue[@]:1}")
  [ -n "${closure[$p]:-}" ] && continue
  closure[$p]=1
  # Split on , and |, drop version constraints and :arch qualifiers.
  IFS=',|' read -ra ds <<<"${depends[$p]}"
  for d in "${ds[@]}"; do
    d=${d%%(*}; d=${d%%:*}; d=${d// /}
    [ -z "$d" ] && continue
    if [ -n "${installed[$d]:-}" ] && [ -z "${closure[$d]:-}" ]; then queue+=("$d"); fi
    for q in ${provider[$d]:-}; do
      [ -z "${closure[$q]:-}" ] && queue+=("$q")
    done
  done
done

# --- libraries the binary loads -----------------------------------------
ldd_out=$(ldd "$BIN" 2>&1) || fail "ldd $BIN failed: $ldd_out"
if echo "$ldd_out" | grep -q 'not found'; then
  fail "libraries not found on this machine:
$(echo "$ldd_out" | grep 'not found')"
fi
libs=$(echo "$ldd_out" | awk '
  $2 == "=>" && $3 ~ /^\// { print $3; next }
  $1 ~ /^\// { print $1 }')   # the dynamic loader line

# Owning package of each library, from one dpkg -S over every spelling of
# every path (as given, resolved, with and without /usr: Debian 12 is
# /usr-merged and dpkg knows each file under one of them).
declare -A owner_by_path
cands=()
for l in $libs; do
  r=$(readlink -f "$l")
  for c in "$l" "$r" "/usr$l" "${l#/usr}" "/usr$r" "${r#/usr}"; do cands+=("$c"); done
done
while IFS= read -r line; do
  case "$line" in diversion*) continue ;; esac
  path=${line##*: }
  pkgs=${line%: *}
  pkg=${pkgs%%,*}; pkg=${pkg%%:*}
  owner_by_path[$path]=$pkg
done < <(dpkg -S "${cands[@]}" 2>/dev/null)
owner_of() {
  local f=$1 r c
  r=$(readlink -f "$f")
  for c in "$f" "$r" "/usr$f" "${f#/usr}" "/usr$r" "${r#/usr}"; do
    if [ -n "${owner_by_path[$c]:-}" ]; then echo "${owner_by_path[$c]}"; return 0; fi
  done
  return 1
}

bad=0 checked=0 ignored=0
declare -A owner
for l in $libs; do
  if ! pkg=$(owner_of "$l"); then
    echo "runtime-libs: FAIL: $l belongs to no Debian package"; bad=$((bad + 1)); continue
  fi
  case "$pkg" in
    libasan*|libubsan*|libtsan*|liblsan*)  # sanitizer builds only; not in the image
      echo "runtime-libs: ignore $l ($pkg: sanitizer runtime)"; ignored=$((ignored + 1)); continue ;;
  esac
  owner[$l]=$pkg
  checked=$((checked + 1))
  if [ -z "${closure[$pkg]:-}" ]; then
    echo "runtime-libs: FAIL: $l is in $pkg, which the runtime stage does not install"
    bad=$((bad + 1))
  fi
done

if [ -n "$missing_listed" ]; then
  echo "runtime-libs: FAIL: listed but not a package installed here:$missing_listed"
  bad=$((bad + 1))
fi
# Each listed library package should be needed (a leftover costs image size).
needed=" ${owner[*]} "
for p in $listed; do
  case "$p" in lib*)
    if [[ "$needed" != *" $p "* ]]; then
      echo "runtime-libs: note: $p is listed but no library of the binary comes from it"
    fi ;;
  esac
done

echo "runtime-libs: $checked libraries checked, $ignored ignored, $bad problems"
if [ "$bad" -ne 0 ]; then
  echo "runtime-libs: 0 passed, 1 failed"
  exit 1
fi
echo "runtime-libs: 1 passed, 0 failed"
