#!/usr/bin/env bash
# One private Ceph cluster (one monitor, one in-memory OSD) with radosgw, a real S3
# implementation, in its own directory.
#
#   radosgw-instance.sh start DIR RGW_PORT [MON_PORT]   (MON_PORT defaults to 13300)
#   radosgw-instance.sh stop DIR
#   radosgw-instance.sh status DIR                      (exit 0 when all three daemons run)
#   radosgw-instance.sh admin DIR ARGS...               (radosgw-admin against this cluster)
#
# The OSD keeps objects in memory (memstore), so a restart loses them: stop and start is a
# fresh cluster each time. cephx stays on because radosgw hangs with auth none.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib/common.sh
. "$here/lib/common.sh"

daemons=(mon.a osd.0 client.rgw.a)

running() {
  local d
  for d in "${daemons[@]}"; do
    pid_alive "$(pid_from_file "$1/run/$d.pid")" "$1/ceph.conf" || return 1
  done
}

ceph_cli() {
  local dir=$1
  shift
  timeout 30 ceph -c "$dir/ceph.conf" "$@"
}

fail() {
  local dir=$1
  shift
  show_log radosgw "$dir"/log/*.log "$dir/setup.log"
  stop "$dir"
  die "radosgw: $*"
}

start() {
  local dir=$1 port=$2 mon_port=${3:-13300}
  local b
  for b in ceph-mon ceph-osd radosgw ceph ceph-authtool monmaptool radosgw-admin curl; do
    command -v "$b" >/dev/null || die "$b is missing (apt-get install radosgw ceph-mon ceph-osd curl)"
  done
  mkdir -p "$dir"
  dir=$(abs_dir "$dir")
  if running "$dir"; then
    say "radosgw: already running in $dir"
    return 0
  fi
  require_free_port "$port" radosgw
  require_free_port "$mon_port" ceph-mon
  # Memstore: nothing survives a restart, so every start builds the cluster from scratch.
  stop "$dir"
  rm -rf "$dir/mon" "$dir/osd" "$dir/run" "$dir/log" "$dir/keyring" "$dir/monmap"
  mkdir -p "$dir/mon" "$dir/osd/ceph-0" "$dir/run" "$dir/log" "$dir/rgw"
  local fsid osd_uuid osd_key
  fsid=$(cat /proc/sys/kernel/random/uuid)
  osd_uuid=$(cat /proc/sys/kernel/random/uuid)
  cat >"$dir/ceph.conf" <<CONF
[global]
fsid = $fsid
mon host = v2:127.0.0.1:$mon_port
public network = 127.0.0.0/8
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
osd objectstore = memstore
osd crush chooseleaf type = 0
run dir = $dir/run
admin socket = $dir/run/\$name.asok
pid file = $dir/run/\$name.pid
log file = $dir/log/\$name.log
keyring = $dir/keyring
mon data = $dir/mon/\$cluster-\$id
osd data = $dir/osd/\$cluster-\$id

[mon]
# Every monitor change (pool create, OSD boot) waits for the next Paxos proposal, 1 s by
# default; radosgw makes about ten of them before it answers. A one-monitor test cluster
# gains nothing from batching them.
paxos propose interval = 0.05
paxos min wait = 0.01

[osd]
keyring = $dir/osd/\$cluster-\$id/keyring
# Memstore capacity, taken from RAM only as it fills. When it is full, writes do not fail:
# they hang. The 1 GiB default filled up after a few runs of the object-store suite.
memstore device bytes = 4294967296

[client.rgw.a]
rgw frontends = beast endpoint=127.0.0.1:$port
# Deleted objects are reclaimed by radosgw's garbage collector, after 2 h by default; tests
# delete what they write, so reclaim it within seconds or the in-memory OSD fills up.
rgw gc obj min wait = 5
rgw gc processor period = 5
rgw data = $dir/rgw
CONF
  echo "$port" >"$dir/port"
  {
    ceph-authtool --create-keyring "$dir/keyring" --gen-key -n mon. --cap mon 'allow *'
    ceph-authtool "$dir/keyring" --gen-key -n client.admin --cap mon 'allow *' --cap osd 'allow *' \
      --cap mgr 'allow *' --cap mds 'allow *'
    ceph-authtool "$dir/keyring" --gen-key -n client.rgw.a --cap mon 'allow rw' --cap osd 'allow rwx'
    monmaptool --create --addv a "[v2:127.0.0.1:$mon_port]" --fsid "$fsid" "$dir/monmap"
    ceph-mon -c "$dir/ceph.conf" --mkfs -i a --monmap "$dir/monmap" --keyring "$dir/keyring"
  } >"$dir/setup.log" 2>&1 || fail "$dir" "monitor setup failed"
  ceph-mon -c "$dir/ceph.conf" -i a >>"$dir/setup.log" 2>&1 || fail "$dir" "ceph-mon did not start"

  osd_key=$(ceph-authtool --gen-print-key)
  echo "{\"cephx_secret\": \"$osd_key\"}" >"$dir/osd-secret.json"
  {
    ceph_cli "$dir" osd new "$osd_uuid" -i "$dir/osd-secret.json"
    ceph-authtool --create-keyring "$dir/osd/ceph-0/keyring" --name osd.0 --add-key "$osd_key"
    ceph-osd -c "$dir/ceph.conf" -i 0 --mkfs --osd-uuid "$osd_uuid"
  } >>"$dir/setup.log" 2>&1 || fail "$dir" "OSD setup failed"
  rm -f "$dir/osd-secret.json"
  ceph-osd -c "$dir/ceph.conf" -i 0 >>"$dir/setup.log" 2>&1 || fail "$dir" "ceph-osd did not start"

  local i
  for ((i = 0; i < 600; i++)); do
    ceph_cli "$dir" osd stat 2>/dev/null | grep -q '1 up' && break
    sleep 0.1
  done
  ceph_cli "$dir" osd stat 2>/dev/null | grep -q '1 up' || fail "$dir" "the OSD did not come up within 60 s"

  radosgw -c "$dir/ceph.conf" -n client.rgw.a >>"$dir/setup.log" 2>&1 || fail "$dir" "radosgw did not start"
  local code=
  for ((i = 0; i < 1200; i++)); do
    code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/" || true)
    [[ $code == 200 ]] && break
    pid_alive "$(pid_from_file "$dir/run/client.rgw.a.pid")" || [[ $i -lt 50 ]] ||
      fail "$dir" "radosgw exited during start"
    sleep 0.1
  done
  [[ $code == 200 ]] || fail "$dir" "radosgw did not answer HTTP 200 on port $port within 120 s"
}

stop() {
  local dir=$1 d pid
  # Gateway first, then the OSD, then the monitor they both report to.
  for d in client.rgw.a osd.0 mon.a; do
    pid=$(pid_from_file "$dir/run/$d.pid")
    [[ -n $pid ]] && stop_pid "$pid" "$d" 20 "$dir/ceph.conf"
  done
  return 0
}

case ${1:-} in
  start) [[ $# -ge 3 ]] || die "usage: $0 start DIR RGW_PORT [MON_PORT]"; shift; start "$@" ;;
  stop) [[ $# -eq 2 ]] || die "usage: $0 stop DIR"; stop "$(abs_dir "$2")" ;;
  status) [[ $# -eq 2 ]] || die "usage: $0 status DIR"; running "$(abs_dir "$2")" ;;
  admin) [[ $# -ge 3 ]] || die "usage: $0 admin DIR ARGS..."; d=$2; shift 2; radosgw-admin -c "$d/ceph.conf" "$@" ;;
  *) die "usage: $0 start DIR RGW_PORT [MON_PORT] | stop DIR | status DIR | admin DIR ARGS..." ;;
esac
