#!/usr/bin/env bash
# The real servers the integration tests run against, private to this machine's tests.
#
#   services.sh up       start what is not running (installs missing Debian packages as root)
#   services.sh down     stop what `up` started, by pid, and remove the state directory
#   services.sh env      print `export CHARTLOG_TEST_...=...` lines for the tests
#   services.sh status   say what runs; exit 0 only when everything does
#   services.sh install  install missing Debian packages (root only; `up` does it too) and fetch
#                        the Kafka broker's jars with Maven (scripts/kafka-cluster.sh fetch)
#
# Servers (all on 127.0.0.1, never the machine's own 5432/3306):
#   PostgreSQL 15   :5499  wal_level=logical, trust auth, superuser postgres
#   MariaDB 10.11   :3407  binlog ROW / FULL image / FULL row metadata, GTID strict mode
#   Apache Kafka    :19092..19097  3 KRaft nodes (controller + broker each), Kafka 4.1 from
#                   Maven Central; brokers on 19092, 19094, 19096; replication factor 3,
#                   min.insync.replicas 2
#   S3              :7480  Ceph radosgw on a one-node in-memory cluster, bucket chartlog-test
# State, logs and the generated S3 keys live in ${CHARTLOG_SERVICES_DIR:-/tmp/chartlog-services}.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib/common.sh
. "$here/lib/common.sh"

STATE=${CHARTLOG_SERVICES_DIR:-/tmp/chartlog-services}
PG_BIN=${CHARTLOG_TEST_PG_BIN:-/usr/lib/postgresql/15/bin}
PG_PORT=${CHARTLOG_SERVICES_PG_PORT:-5499}
MARIADB_PORT=${CHARTLOG_SERVICES_MARIADB_PORT:-3407}
S3_PORT=${CHARTLOG_SERVICES_S3_PORT:-7480}
CEPH_MON_PORT=${CHARTLOG_SERVICES_CEPH_MON_PORT:-13300}
# The first of the 2 × 3 consecutive ports of the Kafka nodes (broker, controller per node).
KAFKA_PORT=${CHARTLOG_SERVICES_KAFKA_PORT:-19092}
KAFKA_NODES=3
S3_BUCKET=chartlog-test
S3_REGION=us-east-1
MARKER=.chartlog-services

# ---------------------------------------------------------------------------------------------
# Debian packages

# Each line: a file (absolute) or command (in PATH) that must exist, the package providing it.
required=(
  "$PG_BIN/postgres postgresql-15"
  "$PG_BIN/pgbench postgresql-15"
  "/usr/sbin/mariadbd mariadb-server-core"
  "mariadb-install-db mariadb-server-core"
  "mariadb mariadb-client-core"
  "mariadb-binlog mariadb-client"
  "sysbench sysbench"
  "java openjdk-17-jre-headless"
  "mvn maven"
  "ceph-mon ceph-mon"
  "monmaptool ceph-base"
  "ceph-osd ceph-osd"
  "radosgw radosgw"
  "radosgw-admin ceph-common"
  "ceph ceph-common"
  "ceph-authtool ceph-common"
  "curl curl"
  "ps procps"
)

have() {
  if [[ $1 == /* ]]; then [[ -e $1 ]]; else command -v "$1" >/dev/null; fi
}

missing_packages() {
  local entry file pkg
  local -A seen=()
  for entry in "${required[@]}"; do
    file=${entry% *}
    pkg=${entry#* }
    [[ -n ${seen[$pkg]:-} ]] && continue
    have "$file" && continue
    seen[$pkg]=1
    printf '%s\n' "$pkg"
  done
}

install_missing() {
  local pkgs
  mapfile -t pkgs < <(missing_packages)
  ((${#pkgs[@]})) || return 0
  if [[ $(id -u) != 0 ]]; then
    die "missing packages: ${pkgs[*]} (run as root: apt-get install -y --no-install-recommends ${pkgs[*]})"
  fi
  local t0
  t0=$(now_ms)
  say "installing ${pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >&2
  say "install: ${pkgs[*]} in $(elapsed "$t0") s"
}

# ---------------------------------------------------------------------------------------------
# One function per service. Each runs in the background during `up` and logs to
# $STATE/log/<name>.start.log.

start_postgres() {
  bash "$here/postgres-instance.sh" start "$STATE/postgres" "$PG_PORT"
}

start_mariadb() {
  bash "$here/mariadb-instance.sh" start "$STATE/mariadb" "$MARIADB_PORT" 1
}

start_kafka() {
  bash "$here/kafka-cluster.sh" start "$STATE/kafka" "$KAFKA_PORT" "$KAFKA_NODES"
}

start_s3() {
  local dir=$STATE/s3
  bash "$here/radosgw-instance.sh" start "$dir" "$S3_PORT" "$CEPH_MON_PORT"
  # The cluster keeps everything in memory, so the user and bucket are made on each start.
  if [[ ! -f $dir/credentials ]] || ! grep -q . "$dir/credentials"; then
    local key secret
    key=$(od -An -N10 -tx1 /dev/urandom | tr -d ' \n' | tr 'a-f' 'A-F')
    secret=$(od -An -N20 -tx1 /dev/urandom | tr -d ' \n')
    (umask 077 && printf 'S3_ACCESS_KEY_ID=%s\nS3_SECRET_ACCESS_KEY=%s\n' "$key" "$secret" >"$dir/credentials")
  fi
  local S3_ACCESS_KEY_ID S3_SECRET_ACCESS_KEY
  # shellcheck disable=SC1091
  . "$dir/credentials"
  if ! bash "$here/radosgw-instance.sh" admin "$dir" user info --uid=ci >/dev/null 2>&1; then
    bash "$here/radosgw-instance.sh" admin "$dir" user create --uid=ci --display-name='chartlog tests' \
      --access-key="$S3_ACCESS_KEY_ID" --secret-key="$S3_SECRET_ACCESS_KEY" >"$dir/user.json"
  fi
  # CreateBucket through S3 itself (SigV4 by curl); 200 also when the bucket is already ours.
  local empty_sha=e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855 code= i
  for ((i = 0; i < 30; i++)); do
    code=$(curl -s -o "$dir/create-bucket.xml" -w '%{http_code}' -X PUT \
      --aws-sigv4 "aws:amz:$S3_REGION:s3" --user "$S3_ACCESS_KEY_ID:$S3_SECRET_ACCESS_KEY" \
      -H "x-amz-content-sha256: $empty_sha" "http://127.0.0.1:$S3_PORT/$S3_BUCKET" || true)
    [[ $code == 200 ]] && return 0
    sleep 0.5
  done
  cat "$dir/create-bucket.xml" >&2 || true
  die "s3: CreateBucket $S3_BUCKET answered HTTP $code"
}

is_running() {
  case $1 in
    postgres) bash "$here/postgres-instance.sh" status "$STATE/postgres" ;;
    mariadb) bash "$here/mariadb-instance.sh" status "$STATE/mariadb" ;;
    kafka) bash "$here/kafka-cluster.sh" status "$STATE/kafka" ;;
    s3) bash "$here/radosgw-instance.sh" status "$STATE/s3" && [[ -f $STATE/s3/credentials ]] ;;
  esac
}

stop_service() {
  case $1 in
    postgres) bash "$here/postgres-instance.sh" stop "$STATE/postgres" ;;
    mariadb) bash "$here/mariadb-instance.sh" stop "$STATE/mariadb" ;;
    kafka) bash "$here/kafka-cluster.sh" stop "$STATE/kafka" ;;
    s3) bash "$here/radosgw-instance.sh" stop "$STATE/s3" ;;
  esac
}

# radosgw is the slowest, so it goes first; all four start side by side.
services=(s3 postgres mariadb kafka)

# ---------------------------------------------------------------------------------------------
# Commands

up() {
  local t0 name
  t0=$(now_ms)
  install_missing
  mkdir -p "$STATE/log"
  touch "$STATE/$MARKER"
  # PostgreSQL runs as user postgres when we are root: it must be able to reach its folder.
  chmod 0755 "$STATE"
  local -A pids=() started=()
  for name in "${services[@]}"; do
    if is_running "$name" 2>/dev/null; then
      say "$name: already running"
      continue
    fi
    (
      s=$(now_ms)
      "start_$name"
      echo "$(elapsed "$s")" >"$STATE/log/$name.start-seconds"
    ) >"$STATE/log/$name.start.log" 2>&1 9>&- &
    pids[$name]=$!
    started[$name]=1
  done
  local failed=()
  for name in "${services[@]}"; do
    [[ -n ${pids[$name]:-} ]] || continue
    if wait "${pids[$name]}"; then
      say "$name: started in $(cat "$STATE/log/$name.start-seconds") s"
    else
      failed+=("$name")
      say "$name: FAILED to start"
      show_log "$name" "$STATE/log/$name.start.log"
    fi
  done
  if ((${#failed[@]})); then
    # Leave nothing half-up behind; the logs stay for reading until `down`.
    for name in "${!started[@]}"; do
      stop_service "$name" || true
    done
    die "could not start: ${failed[*]} (logs in $STATE; \`$0 down\` removes them)"
  fi
  say "services up in $(elapsed "$t0") s (state in $STATE)"
}

# stop_strays: servers `up` did not start itself but that run from this state directory — one
# a test restarted (its pid file names the first one) — are stopped too, so the next `up` on
# these ports finds them free. Only server programs are touched, never a shell or a test.
stop_strays() {
  local pid comm rc=0
  while read -r pid; do
    [[ -n $pid ]] || continue
    comm=$(ps -o comm= -p "$pid" 2>/dev/null || true)
    case $comm in
      postgres | mariadbd | mysqld | radosgw | ceph-mon | ceph-osd | ceph-mgr | java)
        say "$comm (pid $pid) still runs from $STATE; stopping it"
        stop_pid "$pid" "$comm" 3 || rc=1
        ;;
    esac
  done < <(pgrep -f -- "$STATE/" || true)
  return $rc
}

down() {
  [[ -d $STATE ]] || return 0
  if [[ ! -f $STATE/$MARKER ]]; then
    die "$STATE does not look like a services state directory (no $MARKER); not touching it"
  fi
  local name pids=() rc=0 t0
  t0=$(now_ms)
  for name in "${services[@]}"; do
    stop_service "$name" &
    pids+=($!)
  done
  for name in "${pids[@]}"; do
    wait "$name" || rc=1
  done
  stop_strays || rc=1
  ((rc == 0)) || die "some services did not stop; $STATE kept"
  rm -rf "$STATE"
  say "services down in $(elapsed "$t0") s"
}

print_env() {
  local name
  for name in "${services[@]}"; do
    is_running "$name" 2>/dev/null || die "$name is not running: run \`$0 up\` first"
  done
  local S3_ACCESS_KEY_ID S3_SECRET_ACCESS_KEY brokers
  # shellcheck disable=SC1091
  . "$STATE/s3/credentials"
  brokers=$(bash "$here/kafka-cluster.sh" brokers "$STATE/kafka")
  cat <<ENV
export CHARTLOG_TEST_PG_URL=postgres://postgres@127.0.0.1:$PG_PORT/postgres
export CHARTLOG_TEST_PG_BIN=$PG_BIN
export CHARTLOG_TEST_PG_SOCKET_DIR=$STATE/postgres
export CHARTLOG_TEST_MARIADB_URL=mysql://root@127.0.0.1:$MARIADB_PORT/
export CHARTLOG_TEST_MARIADB_CDC_URL=mysql://cdc:cdc@127.0.0.1:$MARIADB_PORT/
export CHARTLOG_TEST_MARIADB_SOCKET=$STATE/mariadb/mysqld.sock
export CHARTLOG_TEST_KAFKA_BROKERS=$brokers
export CHARTLOG_TEST_KAFKA_DIR=$STATE/kafka
export CHARTLOG_TEST_S3_ENDPOINT=http://127.0.0.1:$S3_PORT
export CHARTLOG_TEST_S3_ACCESS_KEY_ID=$S3_ACCESS_KEY_ID
export CHARTLOG_TEST_S3_SECRET_ACCESS_KEY=$S3_SECRET_ACCESS_KEY
export CHARTLOG_TEST_S3_BUCKET=$S3_BUCKET
export CHARTLOG_TEST_S3_REGION=$S3_REGION
export CHARTLOG_TEST_SERVICES_DIR=$STATE
ENV
}

status() {
  local name rc=0
  for name in "${services[@]}"; do
    if is_running "$name" 2>/dev/null; then
      say "$name: running"
    else
      say "$name: stopped"
      rc=1
    fi
  done
  return $rc
}

# Two `up`s (or an `up` and a `down`) at once would race on the same pid files.
with_lock() {
  mkdir -p "$(dirname "$STATE")"
  # Servers started under the lock get `9>&-`, or they would hold it for their whole life.
  exec 9>"$STATE.lock"
  flock -w 300 9 || die "another services.sh holds $STATE.lock"
  "$@"
}

case ${1:-} in
  up) with_lock up ;;
  down) with_lock down ;;
  env) print_env ;;
  status) status ;;
  install) install_missing && bash "$here/kafka-cluster.sh" fetch ;;
  missing) missing_packages ;;
  *) die "usage: $0 up | down | env | status | install" ;;
esac
