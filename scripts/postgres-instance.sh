#!/usr/bin/env bash
# One private PostgreSQL 15 server for tests, in its own directory.
#
#   postgres-instance.sh start DIR PORT [extra postgres flags, e.g. -c fsync=off]
#   postgres-instance.sh stop DIR
#   postgres-instance.sh status DIR        (exit 0 when running)
#
# The server listens on 127.0.0.1:PORT and on a socket in DIR, with wal_level=logical, trust
# authentication and superuser "postgres". initdb refuses to run as root, so as root the
# directory is handed to the postgres user and the binaries run as that user.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib/common.sh
. "$here/lib/common.sh"

PG_BIN=${CHARTLOG_TEST_PG_BIN:-/usr/lib/postgresql/15/bin}

as_owner() {
  if [[ $(id -u) == 0 ]]; then
    (cd / && runuser -u postgres -- "$@")
  else
    (cd / && "$@")
  fi
}

running() {
  [[ -f $1/data/postmaster.pid ]] && pid_alive "$(pid_from_file "$1/data/postmaster.pid")" "$1/data"
}

start() {
  local dir=$1 port=$2
  shift 2
  [[ -x $PG_BIN/postgres ]] || die "no PostgreSQL binaries in $PG_BIN (apt-get install postgresql-15)"
  mkdir -p "$dir"
  dir=$(abs_dir "$dir")
  if running "$dir"; then
    say "postgres: already running in $dir"
    return 0
  fi
  require_free_port "$port" postgres
  if [[ $(id -u) == 0 ]]; then
    chown postgres:postgres "$dir"
    chmod 0700 "$dir"
  fi
  if [[ ! -f $dir/data/PG_VERSION ]]; then
    if ! as_owner "$PG_BIN/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 \
      --no-sync >"$dir/initdb.log" 2>&1; then
      show_log postgres "$dir/initdb.log"
      die "postgres: initdb failed in $dir"
    fi
  fi
  echo "$port" >"$dir/port"
  [[ $(id -u) == 0 ]] && chown postgres:postgres "$dir/port"
  local opts="-p $port -k $dir -c listen_addresses=127.0.0.1 -c wal_level=logical"
  opts+=" -c max_replication_slots=20 -c max_wal_senders=20 $*"
  if ! as_owner "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 -o "$opts" start \
    >"$dir/pg_ctl.log" 2>&1; then
    show_log postgres "$dir/pg_ctl.log" "$dir/server.log"
    die "postgres: server did not start on port $port"
  fi
}

stop() {
  local dir=$1
  [[ -d $dir/data ]] || return 0
  running "$dir" || return 0
  local pid
  pid=$(pid_from_file "$dir/data/postmaster.pid")
  # Fast shutdown waits for walsenders; a logical replication client that never answers
  # keepalives can hold it, hence the immediate fallback.
  as_owner "$PG_BIN/pg_ctl" -D "$dir/data" -m fast -w -t 10 stop >/dev/null 2>&1 ||
    as_owner "$PG_BIN/pg_ctl" -D "$dir/data" -m immediate -w -t 10 stop >/dev/null 2>&1 || true
  stop_pid "$pid" postgres 5 "$dir/data"
}

case ${1:-} in
  start) [[ $# -ge 3 ]] || die "usage: $0 start DIR PORT [postgres flags]"; shift; start "$@" ;;
  stop) [[ $# -eq 2 ]] || die "usage: $0 stop DIR"; stop "$(abs_dir "$2")" ;;
  status) [[ $# -eq 2 ]] || die "usage: $0 status DIR"; running "$(abs_dir "$2")" ;;
  *) die "usage: $0 start DIR PORT [flags] | stop DIR | status DIR" ;;
esac
