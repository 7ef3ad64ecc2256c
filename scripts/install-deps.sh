#!/usr/bin/env bash
# Installs the Debian 12 packages floodgate builds and tests with. Safe to run again: it only
# calls apt-get when something is missing. Needs root (or sudo).
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build ccache pkg-config
  libcpprest-dev libboost-system-dev libboost-dev libssl-dev zlib1g-dev
  nlohmann-json3-dev prometheus-cpp-dev libsqlite3-dev sqlite3
  libgtest-dev libgmock-dev
  python3 python3-venv python3-pip curl procps
  chromium openssl
)
# wrk is only needed by the benchmarks.
if [[ "${FLOODGATE_WITH_BENCH:-0}" == "1" ]]; then PACKAGES+=(wrk); fi

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if ((${#missing[@]})); then
  echo "installing Debian packages: ${missing[*]}"
  SUDO=""
  if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The fake Prefect used by the integration tests is written in Go (>= 1.22).
if ! command -v go >/dev/null 2>&1 && [[ -x /usr/local/go/bin/go ]]; then
  export PATH="/usr/local/go/bin:$PATH"
fi
if ! command -v go >/dev/null 2>&1; then
  echo "install-deps: Go (>= 1.22) is needed for the fake Prefect server and was not found" >&2
  exit 1
fi
