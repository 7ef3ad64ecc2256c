#!/usr/bin/env bash
# Debian packages of the chart, dashboard and status page tests: prometheus (promtool and the
# server the dashboard test scrapes floodgated with) and chromium (the status page test's
# headless browser). Installs only what is missing; needs root (or sudo).
set -euo pipefail
PACKAGES=(prometheus chromium)
# The packaged Prometheus service is not wanted (the tests start their own on free ports);
# without an init system nothing starts it anyway.
source "$(dirname "$0")/lib/apt.sh"
apt_install_missing "${PACKAGES[@]}"
