# Shared helpers for the service scripts (sourced, not run).
# Everything here prints to stderr so that `services.sh env` keeps a clean stdout.

say() { printf '%s\n' "$*" >&2; }

die() {
  say "error: $*"
  exit 1
}

# pid_alive PID [TEXT]: true when PID names a live, non-zombie process (whose command line
# contains TEXT, when given: after a reboot a stale pid file may name someone else's process).
pid_alive() {
  local pid=$1 text=${2:-} state args
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  state=$(ps -o stat= -p "$pid" 2>/dev/null || true)
  [[ -n $state && $state != Z* ]] || return 1
  [[ -z $text ]] && return 0
  args=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || true)
  [[ $args == *"$text"* ]]
}

# abs_dir DIR: DIR as an absolute physical path (as it appears in the servers' command lines),
# or DIR unchanged when it does not exist.
abs_dir() {
  if [[ -d $1 ]]; then (cd "$1" && pwd -P); else printf '%s\n' "$1"; fi
}

# pid_from_file FILE: prints the pid stored in FILE (first line), or nothing.
pid_from_file() {
  [[ -f $1 ]] && head -n1 "$1" | tr -d '[:space:]' || true
}

# stop_pid PID NAME [SECONDS] [TEXT]: SIGTERM, wait, then SIGKILL if it did not go. With TEXT,
# only a process whose command line contains it is touched.
stop_pid() {
  local pid=$1 name=$2 limit=${3:-30} text=${4:-} i
  pid_alive "$pid" "$text" || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < limit * 10; i++)); do
    pid_alive "$pid" || return 0
    sleep 0.1
  done
  say "$name (pid $pid) ignored SIGTERM for ${limit}s; sending SIGKILL"
  kill -KILL "$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do
    pid_alive "$pid" || return 0
    sleep 0.1
  done
  say "$name (pid $pid) is still alive after SIGKILL"
  return 1
}

# show_log NAME FILE...: the tail of a failing service's logs, for the person reading CI output.
show_log() {
  local name=$1 f
  shift
  for f in "$@"; do
    [[ -f $f ]] || continue
    say "----- last lines of $f ($name) -----"
    tail -n 40 "$f" >&2 || true
    say "-----"
  done
}

# now_ms: wall clock in milliseconds, for start-time reports.
now_ms() { date +%s%3N; }

# elapsed SINCE_MS: seconds since SINCE_MS, with two decimals.
elapsed() {
  local d=$(($(now_ms) - $1))
  printf '%d.%02d' $((d / 1000)) $((d % 1000 / 10))
}

# require_free_port PORT NAME: fail early, and say so, when something already listens on
# 127.0.0.1:PORT (most often a server from an earlier run whose state directory is gone).
require_free_port() {
  local port=$1 name=$2
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    local who
    who=$(ss -Hltnp "sport = :$port" 2>/dev/null | grep -o 'users:.*' | head -n1 || true)
    die "$name: port $port on 127.0.0.1 is already in use ${who:+($who)}; stop that server or choose another port"
  fi
}
