#!/usr/bin/env bash
# A throw-away PostgreSQL cluster for the tests: Debian's postgresql-15 binaries, data under
# build/pg, listening on a free port on 127.0.0.1 only (no Unix socket), password (SCRAM) auth,
# one database. Nothing of the system's own PostgreSQL service is used or changed.
#
#   scripts/pg-cluster.sh start   initdb (first time) and start; prints the database URL
#   scripts/pg-cluster.sh url     prints the URL of the running cluster
#   scripts/pg-cluster.sh stop    stops the cluster and removes its data
#   scripts/pg-cluster.sh restart stops and starts the server, keeping the data and the port
#
# PostgreSQL refuses to run as root, so as root the server runs as the `postgres` user the
# Debian package creates (runuser). When that user cannot write under build/ (a checkout under
# /root), the data directory goes to a private directory under /tmp instead; build/pg/datadir
# names it. Environment: FLOODGATE_PG_DIR (default build/pg), FLOODGATE_PG_BIN (default
# /usr/lib/postgresql/15/bin).
set -euo pipefail
cd "$(dirname "$0")/.."

DIR=${FLOODGATE_PG_DIR:-$PWD/build/pg}
BIN=${FLOODGATE_PG_BIN:-/usr/lib/postgresql/15/bin}
DB_USER=floodgate
DB_NAME=floodgate_test
# Loopback only and thrown away after the run; a password still makes the tests go through
# authentication and check that floodgated never logs it.
DB_PASSWORD=fg-test-Secret-7
RUN_AS=()

die() {
  echo "pg-cluster: $*" >&2
  exit 1
}

as_server_user() { "${RUN_AS[@]}" "$@"; }

setup_user() {
  if [[ $(id -u) -eq 0 ]]; then
    id postgres >/dev/null 2>&1 || die "running as root needs the 'postgres' user (apt-get install postgresql)"
    RUN_AS=(runuser -u postgres --)
  fi
}

data_dir() {
  if [[ -f $DIR/datadir ]]; then cat "$DIR/datadir"; else echo "$DIR/data"; fi
}

url() {
  local port
  port=$(cat "$DIR/port" 2>/dev/null) || die "no cluster under $DIR (run: $0 start)"
  echo "postgresql://$DB_USER:$DB_PASSWORD@127.0.0.1:$port/$DB_NAME"
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

running() { [[ -d $(data_dir) ]] && as_server_user "$BIN/pg_ctl" -D "$(data_dir)" status >/dev/null 2>&1; }

start_server() {
  local data port
  data=$(data_dir)
  port=$(cat "$DIR/port")
  # unix_socket_directories='' : TCP on loopback only, so no socket path under a long checkout
  # path and nothing in /var/run/postgresql.
  as_server_user "$BIN/pg_ctl" -D "$data" -l "$data/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $port -c unix_socket_directories=''" start >/dev/null ||
    {
      tail -20 "$data/server.log" >&2 || true
      die "the server did not start (log above)"
    }
}

cmd_start() {
  setup_user
  [[ -x $BIN/initdb ]] || die "$BIN/initdb not found (apt-get install postgresql)"
  mkdir -p "$DIR"
  if running; then
    url
    return
  fi
  local data
  data=$(data_dir)
  if [[ ! -f $data/PG_VERSION ]]; then
    rm -f "$DIR/datadir"
    data="$DIR/data"
    if [[ ${#RUN_AS[@]} -gt 0 ]]; then
      chown postgres "$DIR" 2>/dev/null || true
      if ! runuser -u postgres -- test -w "$DIR"; then
        data=$(mktemp -d /tmp/floodgate-pg.XXXXXX)/data
        chown postgres "$(dirname "$data")"
        echo "$data" >"$DIR/datadir"
      fi
    fi
    local pwfile
    pwfile=$(mktemp)
    echo "$DB_PASSWORD" >"$pwfile"
    chmod 644 "$pwfile"
    as_server_user "$BIN/initdb" -D "$data" -U "$DB_USER" --pwfile="$pwfile" -E UTF8 --locale=C \
      --auth-host=scram-sha-256 --auth-local=peer >"$DIR/initdb.log" 2>&1 ||
      {
        rm -f "$pwfile"
        cat "$DIR/initdb.log" >&2
        die "initdb failed"
      }
    rm -f "$pwfile"
    free_port >"$DIR/port"
  fi
  start_server
  PGPASSWORD=$DB_PASSWORD "$BIN/psql" -h 127.0.0.1 -p "$(cat "$DIR/port")" -U "$DB_USER" \
    -d postgres -qAtc "SELECT 1 FROM pg_database WHERE datname = '$DB_NAME'" | grep -q 1 ||
    PGPASSWORD=$DB_PASSWORD "$BIN/createdb" -h 127.0.0.1 -p "$(cat "$DIR/port")" -U "$DB_USER" \
      "$DB_NAME"
  url
}

cmd_stop() {
  setup_user
  local data
  data=$(data_dir)
  if running; then as_server_user "$BIN/pg_ctl" -D "$data" -m fast -w stop >/dev/null; fi
  if [[ -f $DIR/datadir ]]; then rm -rf "$(dirname "$data")"; fi
  rm -rf "$DIR"
}

cmd_restart() {
  setup_user
  running || die "no running cluster under $DIR"
  as_server_user "$BIN/pg_ctl" -D "$(data_dir)" -m fast -w stop >/dev/null
  start_server
}

case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  restart) cmd_restart ;;
  url) url ;;
  *) die "usage: $0 start|stop|restart|url" ;;
esac
