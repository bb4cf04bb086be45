#!/usr/bin/env bash
# A real Apache Kafka cluster for the tests: NODES (default 3) KRaft nodes on 127.0.0.1, each a
# combined controller + broker in its own JVM, with its own ports, log directory and pid file.
# The broker is the official one (org.apache.kafka:kafka_2.13), fetched with Maven from the
# pinned scripts/kafka/pom.xml into a cache folder outside the state directory.
#
#   kafka-cluster.sh fetch                 copy the broker's jars into the cache (Maven; idempotent)
#   kafka-cluster.sh start DIR PORT [NODES]  node i (0-based): broker PORT+2i, controller PORT+2i+1
#   kafka-cluster.sh stop DIR
#   kafka-cluster.sh status DIR            exit 0 when every node runs
#   kafka-cluster.sh brokers DIR           the bootstrap list, host:port,...
#   kafka-cluster.sh kill-node DIR I       SIGKILL node I (failure tests); start-node brings it back
#   kafka-cluster.sh start-node DIR I
#
# The topic defaults are a hospital's, not a laptop's: replication factor 3, min.insync.replicas
# 2, so that acks=all means two copies. Heaps are small (the test machines have 2 cores and run
# PostgreSQL, MariaDB and Ceph beside it): CHARTLOG_KAFKA_HEAP (default 320m) per node.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib/common.sh
. "$here/lib/common.sh"

POM=$here/kafka/pom.xml
# One cache folder per pom content: a changed pin fetches anew, an unchanged one never again.
pom_id=$(sha256sum "$POM" | cut -c1-12)
LIBS=${CHARTLOG_KAFKA_LIBS:-${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/chartlog/kafka-$pom_id}
HEAP=${CHARTLOG_KAFKA_HEAP:-320m}
# What identifies our brokers in their command lines.
mark='kafka.Kafka'

java_bin() {
  if [[ -n ${CHARTLOG_KAFKA_JAVA:-} ]]; then
    printf '%s\n' "$CHARTLOG_KAFKA_JAVA"
  elif [[ -x /usr/lib/jvm/java-17-openjdk-amd64/bin/java ]]; then
    printf '%s\n' /usr/lib/jvm/java-17-openjdk-amd64/bin/java
  else
    command -v java || die "kafka: no java (apt-get install openjdk-17-jre-headless)"
  fi
}

fetch() {
  [[ -f $LIBS/.complete ]] && return 0
  command -v mvn >/dev/null || die "kafka: mvn is missing (apt-get install maven)"
  local t0 tmp
  t0=$(now_ms)
  mkdir -p "$(dirname "$LIBS")"
  tmp=$(mktemp -d "$LIBS.XXXXXX")
  # -B: no progress bars in CI logs; the copy goes to a temporary folder, renamed when whole.
  if ! (cd "$here/kafka" && mvn -q -B dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$tmp") >"$tmp.log" 2>&1; then
    show_log maven "$tmp.log"
    rm -rf "$tmp" "$tmp.log"
    die "kafka: mvn could not fetch the broker (see above)"
  fi
  rm -f "$tmp.log"
  touch "$tmp/.complete"
  rm -rf "$LIBS"
  mv "$tmp" "$LIBS"
  say "kafka: broker jars fetched into $LIBS in $(elapsed "$t0") s"
}

node_dir() { printf '%s/node-%s\n' "$1" "$2"; }

node_running() {
  pid_alive "$(pid_from_file "$(node_dir "$1" "$2")/kafka.pid")" "$mark"
}

nodes_of() {
  cat "$1/nodes" 2>/dev/null || echo 0
}

running() {
  local dir=$1 i n
  n=$(nodes_of "$dir")
  ((n > 0)) || return 1
  for ((i = 0; i < n; i++)); do node_running "$dir" "$i" || return 1; done
}

# write_config DIR I PORT NODES: the node's server.properties and log4j2 configuration.
write_config() {
  local dir=$1 i=$2 port=$3 nodes=$4 nd voters='' j
  nd=$(node_dir "$dir" "$i")
  for ((j = 0; j < nodes; j++)); do voters+="${voters:+,}$((j + 1))@127.0.0.1:$((port + 2 * j + 1))"; done
  mkdir -p "$nd/data" "$nd/logs"
  cat >"$nd/server.properties" <<PROPS
process.roles=broker,controller
node.id=$((i + 1))
controller.quorum.voters=$voters
listeners=PLAINTEXT://127.0.0.1:$((port + 2 * i)),CONTROLLER://127.0.0.1:$((port + 2 * i + 1))
advertised.listeners=PLAINTEXT://127.0.0.1:$((port + 2 * i))
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$nd/data
# What a hospital's Kafka team runs: three copies, two in sync before acks=all answers.
num.partitions=4
default.replication.factor=$((nodes < 3 ? nodes : 3))
min.insync.replicas=$((nodes < 2 ? 1 : 2))
offsets.topic.replication.factor=$((nodes < 3 ? nodes : 3))
transaction.state.log.replication.factor=$((nodes < 3 ? nodes : 3))
transaction.state.log.min.isr=$((nodes < 2 ? 1 : 2))
share.coordinator.state.topic.replication.factor=$((nodes < 3 ? nodes : 3))
share.coordinator.state.topic.min.isr=$((nodes < 2 ? 1 : 2))
auto.create.topics.enable=true
# Small for a test machine: fewer internal partitions, threads and buffers than the defaults.
offsets.topic.num.partitions=5
transaction.state.log.num.partitions=5
num.network.threads=2
num.io.threads=2
background.threads=2
num.recovery.threads.per.data.dir=1
log.cleaner.threads=1
log.cleaner.dedupe.buffer.size=8388608
log.segment.bytes=67108864
# Consumer groups form at once (the default waits 3 s for more members).
group.initial.rebalance.delay.ms=0
# A killed broker is declared dead and its partitions led elsewhere within seconds.
broker.session.timeout.ms=6000
broker.heartbeat.interval.ms=1000
PROPS
  cat >"$nd/log4j2.properties" <<'LOG4J'
status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = ${sys:kafka.logs.dir}/server.log
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = file
logger.state.name = state.change.logger
logger.state.level = WARN
LOG4J
}

jvm_args() {
  local nd=$1
  printf '%s\n' "-Xms64m" "-Xmx$HEAP" "-XX:+UseSerialGC" "-XX:+ExitOnOutOfMemoryError" "-Djava.awt.headless=true" \
    "-Dkafka.logs.dir=$nd/logs" "-Dlog4j2.configurationFile=$nd/log4j2.properties" -cp "$LIBS/*"
}

format_node() {
  local dir=$1 i=$2 nd java
  nd=$(node_dir "$dir" "$i")
  java=$(java_bin)
  local -a args
  mapfile -t args < <(jvm_args "$nd")
  "$java" "${args[@]}" kafka.tools.StorageTool format --cluster-id "$(cat "$dir/cluster-id")" --config "$nd/server.properties" --ignore-formatted \
    >"$nd/logs/format.log" 2>&1 || {
    show_log "kafka node $i format" "$nd/logs/format.log"
    return 1
  }
}

start_node() {
  local dir=$1 i=$2 nd java
  nd=$(node_dir "$dir" "$i")
  node_running "$dir" "$i" && return 0
  java=$(java_bin)
  local -a args
  mapfile -t args < <(jvm_args "$nd")
  # setsid: the broker outlives the shell that started it; 9>&-: it must not hold services.sh's lock.
  setsid "$java" "${args[@]}" kafka.Kafka "$nd/server.properties" </dev/null >"$nd/logs/stdout.log" 2>&1 9>&- &
  echo $! >"$nd/kafka.pid"
}

# wait_started DIR I SECONDS: until the node logs that its broker started (it is unfenced then).
wait_started() {
  local dir=$1 i=$2 limit=$3 nd pid t
  nd=$(node_dir "$dir" "$i")
  pid=$(pid_from_file "$nd/kafka.pid")
  for ((t = 0; t < limit * 10; t++)); do
    grep -q 'Kafka Server started' "$nd/logs/server.log" 2>/dev/null && return 0
    pid_alive "$pid" "$mark" || break
    sleep 0.1
  done
  show_log "kafka node $i" "$nd/logs/server.log" "$nd/logs/stdout.log"
  return 1
}

start() {
  local dir=$1 port=$2 nodes=${3:-3} i
  [[ $port =~ ^[0-9]+$ ]] || die "kafka: PORT must be a number, not '$port'"
  fetch
  mkdir -p "$dir"
  dir=$(abs_dir "$dir")
  if running "$dir"; then
    say "kafka: already running in $dir"
    return 0
  fi
  for ((i = 0; i < 2 * nodes; i++)); do require_free_port $((port + i)) "kafka"; done
  echo "$nodes" >"$dir/nodes"
  # A random 16-byte id in URL-safe base64. One that starts with '-' would be read by the
  # storage tool as an option, so draw again until it does not.
  if [[ ! -f $dir/cluster-id ]]; then
    local id=-
    while [[ $id == -* ]]; do id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n'); done
    printf '%s' "$id" >"$dir/cluster-id"
  fi
  local brokers=''
  for ((i = 0; i < nodes; i++)); do
    write_config "$dir" "$i" "$port" "$nodes"
    brokers+="${brokers:+,}127.0.0.1:$((port + 2 * i))"
  done
  # Formatting is one JVM per node: side by side.
  local -a pids=()
  for ((i = 0; i < nodes; i++)); do
    format_node "$dir" "$i" &
    pids+=($!)
  done
  for i in "${pids[@]}"; do wait "$i" || die "kafka: formatting a log directory failed"; done
  for ((i = 0; i < nodes; i++)); do start_node "$dir" "$i"; done
  for ((i = 0; i < nodes; i++)); do
    if ! wait_started "$dir" "$i" 120; then
      stop "$dir" || true
      die "kafka: node $i did not start"
    fi
  done
  echo "$brokers" >"$dir/brokers"
}

stop_node() {
  local dir=$1 i=$2
  stop_pid "$(pid_from_file "$(node_dir "$dir" "$i")/kafka.pid")" "kafka node $i" "${3:-20}" "$mark"
}

stop() {
  local dir=$1 i n rc=0
  n=$(nodes_of "$dir")
  # All at once: a node stopping alone would wait for the others to take over its partitions.
  local -a pids=()
  for ((i = 0; i < n; i++)); do
    stop_node "$dir" "$i" 15 &
    pids+=($!)
  done
  for i in "${pids[@]}"; do wait "$i" || rc=1; done
  return $rc
}

kill_node() {
  local dir=$1 i=$2 pid
  pid=$(pid_from_file "$(node_dir "$dir" "$i")/kafka.pid")
  pid_alive "$pid" "$mark" || die "kafka: node $i is not running"
  kill -KILL "$pid"
  while pid_alive "$pid"; do sleep 0.05; done
}

restart_node() {
  local dir=$1 i=$2 nd
  nd=$(node_dir "$dir" "$i")
  : >"$nd/logs/server.log"
  start_node "$dir" "$i"
  wait_started "$dir" "$i" 120 || die "kafka: node $i did not start again"
}

case ${1:-} in
  fetch) fetch ;;
  start) [[ $# -ge 3 ]] || die "usage: $0 start DIR PORT [NODES]"; shift; start "$@" ;;
  stop) [[ $# -eq 2 ]] || die "usage: $0 stop DIR"; stop "$(abs_dir "$2")" ;;
  status) [[ $# -eq 2 ]] || die "usage: $0 status DIR"; running "$(abs_dir "$2")" ;;
  brokers) [[ $# -eq 2 ]] || die "usage: $0 brokers DIR"; running "$(abs_dir "$2")" || die "kafka: not running in $2"; cat "$(abs_dir "$2")/brokers" ;;
  kill-node) [[ $# -eq 3 ]] || die "usage: $0 kill-node DIR I"; kill_node "$(abs_dir "$2")" "$3" ;;
  start-node) [[ $# -eq 3 ]] || die "usage: $0 start-node DIR I"; restart_node "$(abs_dir "$2")" "$3" ;;
  *) die "usage: $0 fetch | start DIR PORT [NODES] | stop DIR | status DIR | brokers DIR | kill-node DIR I | start-node DIR I" ;;
esac
