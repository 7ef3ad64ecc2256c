#!/usr/bin/env bash
# Prints the Debian packages that hold the shared libraries a binary loads (from ldd), one a
# line, sorted. The Dockerfile's runtime stage installs exactly this list, and the chart lane of
# the test command runs it on the binary it built and checks the answer, so the image's library
# list is the one CI proved. Fails if a library is not found or belongs to no package.
# Usage: scripts/runtime-libs.sh BINARY [--check]   (--check: also print each library's package)
set -euo pipefail
bin=${1:?usage: runtime-libs.sh BINARY [--check]}
verbose=${2:-}
[[ -x "$bin" ]] || { echo "runtime-libs: $bin is not an executable" >&2; exit 1; }

if ldd "$bin" | grep -q 'not found'; then
  ldd "$bin" | grep 'not found' >&2
  echo "runtime-libs: unresolved libraries" >&2
  exit 1
fi
declare -A pkgs=()
while read -r lib; do
  # Debian 12 is merged-/usr: ldd may print /lib/... while dpkg knows /usr/lib/... (or back).
  real=$(readlink -f "$lib")
  owner=""
  for cand in "$lib" "$real" "/usr$lib" "/usr$real" "${lib#/usr}" "${real#/usr}"; do
    owner=$(dpkg-query -S "$cand" 2>/dev/null | head -n1 | cut -d: -f1) && [[ -n "$owner" ]] && break
  done
  if [[ -z "$owner" ]]; then
    echo "runtime-libs: no Debian package holds $lib" >&2
    exit 1
  fi
  [[ "$verbose" == "--check" ]] && echo "$lib -> $owner" >&2
  pkgs[$owner]=1
done < <(ldd "$bin" | awk '/=> \//{print $3} /^\t\/[^ ]+ \(/{print $1}')
printf '%s\n' "${!pkgs[@]}" | sort
