#!/usr/bin/env bash
# The fuzz lane: builds the libFuzzer targets (tests/fuzz, preset `fuzz`: clang 14, ASan + UBSan)
# and runs each for FUZZ_SECONDS (default 20) from its seed corpus in tests/fuzz/corpus/<target>.
# A crash, leak, sanitizer report or timeout fails the lane; the input is left in
# build/fuzz/artifacts/. New corpus entries go to build/fuzz/corpus/ (the repo's seeds are not
# changed). Installs clang-14 and libclang-rt-14-dev (libFuzzer's runtime) when missing.
# Usage: scripts/fuzz.sh [target...]    (targets: batch_request router prefect_answers)
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH="${FUZZ_SECONDS:-20}"
TARGETS=("$@")
if ((${#TARGETS[@]} == 0)); then TARGETS=(batch_request router prefect_answers); fi

need=()
for p in clang-14 libclang-rt-14-dev; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if ((${#need[@]})); then
  SUDO=""
  if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

cmake --preset fuzz >/dev/null
cmake --build --preset fuzz -j 2 --target "${TARGETS[@]/#/fuzz_}"
# FUZZ_BUILD_ONLY=1 only builds the targets (scripts/test.sh builds them early).
[[ "${FUZZ_BUILD_ONLY:-0}" == 1 ]] && exit 0

export ASAN_OPTIONS="halt_on_error=1:abort_on_error=1:detect_leaks=1"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
failed=0
for t in "${TARGETS[@]}"; do
  work="build/fuzz/corpus/$t"
  art="build/fuzz/artifacts/$t/"
  mkdir -p "$work" "$art"
  echo "== fuzz $t for ${SECONDS_EACH}s"
  # -max_len: request bodies and answers of a few KiB reach every branch; -rss_limit_mb and
  # -timeout turn a blow-up into a failure instead of a stuck lane.
  if ! "build/fuzz/tests/fuzz/fuzz_$t" "$work" "tests/fuzz/corpus/$t" \
      -max_total_time="$SECONDS_EACH" -max_len=4096 -timeout=10 -rss_limit_mb=2048 \
      -artifact_prefix="$art" -print_final_stats=1 2>"build/fuzz/$t.log"; then
    echo "fuzz $t FAILED; input in $art" >&2
    grep -E "ERROR|runtime error|SUMMARY|Test unit written" "build/fuzz/$t.log" | head -20 >&2
    failed=1
  fi
  grep -E "stat::number_of_executed_units|stat::peak_rss_mb|cov:" "build/fuzz/$t.log" | tail -3
done
exit $failed
