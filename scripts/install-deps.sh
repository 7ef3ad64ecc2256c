#!/usr/bin/env bash
# Installs the Debian 12 packages floodgate builds and tests with. Safe to run again: it only
# calls apt-get when something is missing. Needs root (or sudo).
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build ccache pkg-config
  libcpprest-dev libboost-system-dev libboost-dev libssl-dev zlib1g-dev
  nlohmann-json3-dev prometheus-cpp-dev libsqlite3-dev sqlite3
  libpq-dev
  libgtest-dev libgmock-dev
  python3 python3-venv python3-pip curl procps
  chromium openssl
)
# The benchmarks (tests/bench) use jq, /usr/bin/time (package time) and wrk, and
# tests/bench/perf_launch.sh perf (package linux-perf); unzip unpacks the Go toolchain below.
PACKAGES+=(jq time wrk linux-perf unzip ca-certificates)
# The fuzz lane (scripts/fuzz.sh): clang and libFuzzer's runtime.
PACKAGES+=(clang-14 libclang-rt-14-dev)
# The failing-disk tests (tests/integration/test_disk.py) mount a tmpfs and use chattr.
PACKAGES+=(mount e2fsprogs)
# The PostgreSQL store's tests run a throw-away server (scripts/pg-cluster.sh).
PACKAGES+=(postgresql)

source "$(dirname "$0")/lib/apt.sh"
apt_install_missing "${PACKAGES[@]}"

# The fake Prefect (tests/fake_prefect) needs the Go its go.mod names (go 1.26; its tests use
# b.Loop). Debian 12 ships Go 1.19, so when no Go that new is found, a pinned toolchain is fetched
# from the Go module proxy, which serves Go releases as the module golang.org/toolchain (the
# same zip `GOTOOLCHAIN=go1.26.8` downloads). It is checked against the proxy's .info (the
# version) and against the sha256 pinned here, then unpacked into $FLOODGATE_GO_ROOT;
# scripts/test.sh puts its bin/ first on PATH. The pin was taken on 2026-11-30 from
# https://proxy.golang.org; sum.golang.org was not reachable from the build machine, so the
# go.sum hash is recorded for a manual check (`go mod download -json
# golang.org/toolchain@v0.0.1-go1.26.8.linux-amd64` prints it as Sum), and the zip's bin/go and
# bin/gofmt were byte-identical to those of the official go1.26.8.linux-amd64.tar.gz.
GO_MIN_MINOR=26 # go 1.26, from tests/fake_prefect/go.mod
GO_PIN_VERSION=go1.26.8
GO_PIN_SHA256=30c2b1bf7dcc88d3eb0a1364e47ddd9128edb3110a30e8a0ef61cd5856b31de7 # linux-amd64 zip
# go.sum line: golang.org/toolchain v0.0.1-go1.26.8.linux-amd64 h1:ZOmGe1OnfREDMIdb1Qi4G9JSuDPBLGExZMQ4nis1RXM=
FLOODGATE_GO_ROOT=${FLOODGATE_GO_ROOT:-/usr/local/lib/floodgate/go}

go_is_recent() { # $1: a go binary; true when it is Go 1.$GO_MIN_MINOR or newer
  local v
  v=$("$1" env GOVERSION 2>/dev/null) || return 1
  [[ $v =~ ^go1\.([0-9]+) ]] && ((BASH_REMATCH[1] >= GO_MIN_MINOR))
}

find_go() { # prints a recent-enough go binary, if any
  local c
  for c in "$FLOODGATE_GO_ROOT/bin/go" /usr/local/go/bin/go "$(command -v go 2>/dev/null || true)"; do
    if [[ -n $c && -x $c ]] && go_is_recent "$c"; then
      echo "$c"
      return 0
    fi
  done
  return 1
}

install_go_toolchain() {
  local arch proxy base tmp info got
  case "$(uname -m)" in
    x86_64) arch=amd64 ;;
    *)
      echo "install-deps: no pinned Go toolchain for $(uname -m); install Go >= 1.$GO_MIN_MINOR" >&2
      return 1
      ;;
  esac
  # GOPROXY may be a list ("https://a,direct"); take its first URL entry.
  proxy=${GOPROXY:-https://proxy.golang.org}
  proxy=${proxy%%[,|]*}
  [[ $proxy == http* ]] || proxy=https://proxy.golang.org
  base="${proxy%/}/golang.org/toolchain/@v/v0.0.1-$GO_PIN_VERSION.linux-$arch"
  echo "install-deps: fetching $GO_PIN_VERSION from $base.zip"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"; trap - RETURN' RETURN
  info=$(curl -fsSL --retry 3 "$base.info")
  if [[ $info != *"\"v0.0.1-$GO_PIN_VERSION.linux-$arch\""* ]]; then
    echo "install-deps: unexpected answer from $base.info: $info" >&2
    return 1
  fi
  curl -fsSL --retry 3 -o "$tmp/go.zip" "$base.zip"
  got=$(sha256sum "$tmp/go.zip" | cut -d' ' -f1)
  if [[ $got != "$GO_PIN_SHA256" ]]; then
    echo "install-deps: sha256 of $base.zip is $got, expected $GO_PIN_SHA256" >&2
    return 1
  fi
  unzip -q "$tmp/go.zip" -d "$tmp/x"
  local src="$tmp/x/golang.org/toolchain@v0.0.1-$GO_PIN_VERSION.linux-$arch"
  # The module zip stores the tree's go.mod files as _go.mod; a toolchain run from it works as is
  # (that is how GOTOOLCHAIN runs it). Use only this toolchain, never switch to another.
  sed -i 's/^GOTOOLCHAIN=.*/GOTOOLCHAIN=local/' "$src/go.env"
  $SUDO mkdir -p "$(dirname "$FLOODGATE_GO_ROOT")"
  $SUDO rm -rf "$FLOODGATE_GO_ROOT"
  $SUDO mv "$src" "$FLOODGATE_GO_ROOT"
  go_is_recent "$FLOODGATE_GO_ROOT/bin/go"
}

SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
if ! GO=$(find_go); then
  install_go_toolchain
  GO=$(find_go)
fi
echo "install-deps: using $GO ($("$GO" env GOVERSION))"
# scripts/test.sh puts $FLOODGATE_GO_ROOT/bin on its own PATH, but the benchmark scripts
# (tests/bench, docs/benchmarks.md) and a developer's shell run plain `go`: link the pinned
# toolchain into /usr/local/bin (ahead of Debian's /usr/bin/go 1.19 on root's PATH), unless
# something is there already.
if [[ $GO == "$FLOODGATE_GO_ROOT/bin/go" ]]; then
  for tool in go gofmt; do
    if [[ ! -e /usr/local/bin/$tool && ! -L /usr/local/bin/$tool ]]; then
      $SUDO ln -s "$FLOODGATE_GO_ROOT/bin/$tool" "/usr/local/bin/$tool"
      echo "install-deps: linked /usr/local/bin/$tool -> $FLOODGATE_GO_ROOT/bin/$tool"
    fi
  done
fi
