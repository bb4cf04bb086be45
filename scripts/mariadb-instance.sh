#!/usr/bin/env bash
# One private MariaDB 10.11 server for tests, in its own directory.
#
#   mariadb-instance.sh start DIR PORT SERVER_ID [extra mariadbd flags, e.g. --log-slave-updates]
#   mariadb-instance.sh stop DIR
#   mariadb-instance.sh status DIR         (exit 0 when running)
#
# The server listens on 127.0.0.1:PORT and on DIR/mysqld.sock, with the binlog the CDC
# connector needs (ROW, FULL image, FULL row metadata: without FULL metadata ENUM/SET values
# and rows replayed across an ALTER decode wrongly without any error) and GTID strict mode.
# Extra flags come last, so they override the defaults. Users: root without password (socket
# and TCP from 127.0.0.1) and cdc/cdc with REPLICATION SLAVE, REPLICATION CLIENT, SELECT.
# The user setup is not written to the binlog, so a fresh server's binlog holds no
# transactions: a replica can be pointed at a primary without GTID conflicts.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib/common.sh
. "$here/lib/common.sh"

MARIADBD=${MARIADBD:-$(command -v mariadbd || echo /usr/sbin/mariadbd)}

running() {
  [[ -f $1/mariadbd.pid ]] && pid_alive "$(pid_from_file "$1/mariadbd.pid")" "--datadir=$1/data"
}

client() {
  local dir=$1
  shift
  mariadb --no-defaults --socket="$dir/mysqld.sock" -uroot "$@"
}

start() {
  local dir=$1 port=$2 server_id=$3
  shift 3
  command -v mariadb-install-db >/dev/null && [[ -x $MARIADBD ]] ||
    die "MariaDB is not installed (apt-get install mariadb-server-core mariadb-client-core)"
  mkdir -p "$dir"
  dir=$(abs_dir "$dir")
  if running "$dir"; then
    say "mariadb: already running in $dir"
    return 0
  fi
  require_free_port "$port" mariadb
  local user
  user=$(id -un)
  mkdir -p "$dir/binlog" "$dir/tmp"
  if [[ ! -d $dir/data/mysql ]]; then
    # A private tmpdir: with the shared /tmp, 3 of 54 concurrent installs here failed because
    # their temporary tables vanished ("Could not remove temporary table", then a crash).
    rm -rf "$dir/data"
    if ! mariadb-install-db --no-defaults --user="$user" --datadir="$dir/data" --tmpdir="$dir/tmp" \
      --auth-root-authentication-method=normal --skip-test-db >"$dir/install.log" 2>&1; then
      show_log mariadb "$dir/install.log"
      die "mariadb: mariadb-install-db failed in $dir"
    fi
  fi
  echo "$port" >"$dir/port"
  # setsid: the server must not share the caller's process group, or a Ctrl-C in the
  # terminal that ran `up` would take it down with the shell.
  setsid "$MARIADBD" --no-defaults --user="$user" --datadir="$dir/data" --tmpdir="$dir/tmp" \
    --socket="$dir/mysqld.sock" --pid-file="$dir/mysqld.pid" --port="$port" \
    --bind-address=127.0.0.1 --skip-name-resolve --log-error="$dir/error.log" \
    --server-id="$server_id" --log-bin="$dir/binlog/mysql-bin" --binlog-format=ROW \
    --binlog-row-image=FULL --binlog-row-metadata=FULL --gtid-strict-mode=1 \
    --character-set-server=utf8mb4 --collation-server=utf8mb4_unicode_ci "$@" \
    </dev/null >>"$dir/stdout.log" 2>&1 &
  local pid=$!
  echo "$pid" >"$dir/mariadbd.pid"
  local i
  for ((i = 0; i < 600; i++)); do
    if ! pid_alive "$pid"; then
      show_log mariadb "$dir/error.log" "$dir/stdout.log"
      die "mariadb: server exited during start (port $port)"
    fi
    client "$dir" -e 'SELECT 1' >/dev/null 2>&1 && break
    sleep 0.05
  done
  if ! client "$dir" -e 'SELECT 1' >/dev/null 2>&1; then
    show_log mariadb "$dir/error.log"
    stop_pid "$pid" mariadb 10 || true
    die "mariadb: server did not answer within 30 s (port $port)"
  fi
  client "$dir" <<'SQL'
SET sql_log_bin = 0;
CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED BY '';
GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;
CREATE USER IF NOT EXISTS 'cdc'@'%' IDENTIFIED BY 'cdc';
GRANT REPLICATION SLAVE, REPLICATION CLIENT, SELECT ON *.* TO 'cdc'@'%';
SQL
}

stop() {
  local dir=$1
  running "$dir" || return 0
  stop_pid "$(pid_from_file "$dir/mariadbd.pid")" mariadb 30 "--datadir=$dir/data"
}

case ${1:-} in
  start) [[ $# -ge 4 ]] || die "usage: $0 start DIR PORT SERVER_ID [mariadbd flags]"; shift; start "$@" ;;
  stop) [[ $# -eq 2 ]] || die "usage: $0 stop DIR"; stop "$(abs_dir "$2")" ;;
  status) [[ $# -eq 2 ]] || die "usage: $0 status DIR"; running "$(abs_dir "$2")" ;;
  *) die "usage: $0 start DIR PORT SERVER_ID [flags] | stop DIR | status DIR" ;;
esac
