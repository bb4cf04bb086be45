#!/usr/bin/env bash
# A Kafka-protocol test broker: librdkafka's mock cluster, hosted by Debian's kcat.
#
#   kafka-mock.sh start DIR [BROKERS]   (BROKERS defaults to 3)
#   kafka-mock.sh stop DIR
#   kafka-mock.sh status DIR            (exit 0 when running)
#   kafka-mock.sh brokers DIR           (prints the bootstrap list, host:port,...)
#
# Apache Kafka itself is not packaged in Debian and no npm package ships a broker. The mock
# speaks the real protocol (metadata, produce, fetch, consumer groups, offsets) on random
# ports; it lacks topic admin APIs and idempotent producers (see FIELD-NOTES). Data lives in
# memory and only the last ~5 MiB of each partition is kept.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib/common.sh
. "$here/lib/common.sh"

# What identifies our kcat in its command line.
mark='test.mock.num.brokers'

running() {
  [[ -f $1/brokers ]] && pid_alive "$(pid_from_file "$1/kcat.pid")" "$mark"
}

start() {
  local dir=$1 count=${2:-3}
  command -v kcat >/dev/null || die "kcat is missing (apt-get install kcat)"
  mkdir -p "$dir"
  dir=$(abs_dir "$dir")
  if running "$dir"; then
    say "kafka: already running in $dir"
    return 0
  fi
  rm -f "$dir/brokers"
  # A consumer that waits forever at the end of a keepalive topic keeps kcat, and with it
  # the mock cluster, alive. The bootstrap address is ignored once the mock is enabled.
  setsid kcat -C -q -X "test.mock.num.brokers=$count" -t __mock_keepalive -o end -b 127.0.0.1:1 \
    </dev/null >/dev/null 2>"$dir/kcat.log" &
  local pid=$! i line=
  echo "$pid" >"$dir/kcat.pid"
  for ((i = 0; i < 200; i++)); do
    line=$(grep -o 'replaced with [0-9.:,]*' "$dir/kcat.log" 2>/dev/null || true)
    [[ -n $line ]] && break
    pid_alive "$pid" || break
    sleep 0.05
  done
  if [[ -z $line ]]; then
    show_log kafka "$dir/kcat.log"
    stop_pid "$pid" kcat 5 || true
    die "kafka: the mock cluster did not report its brokers"
  fi
  echo "${line#replaced with }" >"$dir/brokers"
}

stop() {
  local dir=$1
  stop_pid "$(pid_from_file "$dir/kcat.pid")" kcat 10 "$mark"
}

case ${1:-} in
  start) [[ $# -ge 2 ]] || die "usage: $0 start DIR [BROKERS]"; shift; start "$@" ;;
  stop) [[ $# -eq 2 ]] || die "usage: $0 stop DIR"; stop "$(abs_dir "$2")" ;;
  status) [[ $# -eq 2 ]] || die "usage: $0 status DIR"; running "$(abs_dir "$2")" ;;
  brokers) [[ $# -eq 2 ]] || die "usage: $0 brokers DIR"; running "$2" || die "kafka: not running in $2"; cat "$(abs_dir "$2")/brokers" ;;
  *) die "usage: $0 start DIR [BROKERS] | stop DIR | status DIR | brokers DIR" ;;
esac
