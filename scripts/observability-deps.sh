#!/usr/bin/env bash
# Debian packages of the chart, dashboard and status page tests: prometheus (promtool and the
# server the dashboard test scrapes floodgated with) and chromium (the status page test's
# headless browser). Installs only what is missing; needs root (or sudo).
set -euo pipefail
PACKAGES=(prometheus chromium)
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
  # The packaged Prometheus service is not wanted (the tests start their own on free ports);
  # without an init system nothing starts it anyway.
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
fi
