#!/usr/bin/env bash
# Runs one tier of tests with Node's built-in runner through tsx.
#
#   run-tests.sh unit|integration [FILE...]
#
# Node 20 does not expand globs in `--test` arguments (21 does), so bash does it here. A tier
# with no test files is an error: a glob that matches nothing proves nothing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
tier=${1:-}
shift || true
case $tier in
  unit | integration) ;;
  *) echo "usage: $0 unit|integration [FILE...]" >&2; exit 2 ;;
esac
explicit=$#
if (($#)); then
  files=("$@")
else
  shopt -s globstar nullglob
  files=(test/"$tier"/**/*.test.ts)
fi
if ((${#files[@]} == 0)); then
  echo "error: no test files match test/$tier/**/*.test.ts" >&2
  exit 1
fi
# A hung test must fail CI instead of holding it forever. The limit applies to each file as a
# whole: run-crash.test.ts (8 variants × 10 kill -9, the Kafka ones waiting out consumer-group
# sessions) took 417 s of its 7 first variants in a loaded CI run and passed 600 s on the 8th.
run() {
  node --import tsx --test --test-reporter=spec \
    --test-timeout="${CHARTLOG_TEST_TIMEOUT_MS:-1500000}" "$@"
}
if [[ $tier == unit ]]; then
  run "${files[@]}"
  exit 0
fi

# Integration tests share the servers of services.sh. Each file works in its own databases,
# slots, topics and object prefixes, and most of a file's time is spent waiting (for flushes,
# for kill -9 restarts, for consumer groups), so CHARTLOG_TEST_LANES files (default 2) run at
# once. A file that stops or breaks a shared server (a Kafka broker killed, radosgw stopped)
# would fail its neighbours for a reason of its own making, and a file that compares the
# archive with the server-wide binlog head (@@gtid_binlog_pos: a neighbour's commits move it)
# cannot tell its own commits from theirs: those run afterwards, alone.
# Files named on the command line run one at a time, as given.
lanes=${CHARTLOG_TEST_LANES:-2}
if ! [[ $lanes =~ ^[1-9][0-9]*$ ]]; then
  echo "error: CHARTLOG_TEST_LANES must be a positive whole number (got '$lanes'); unset it for the default 2" >&2
  exit 2
fi
if ((explicit)); then
  run --test-concurrency=1 "${files[@]}"
  exit 0
fi
exclusive=(test/integration/kafka-broker-failure.test.ts test/integration/run-store-outage.test.ts
  test/integration/mysql-xa.test.ts test/integration/mysql-large-transaction.test.ts)
# The longest files (CI of 2026-12-02) start first, so that the lanes end together instead of
# one of them starting a five-minute file when the other has nothing left.
longest=(run-crash kafka-large-transaction ddl-matrix-mariadb ddl-matrix-postgres archive-auth run-lease
  replicate restore-targets kafka-scaleout ddl-add-column resync restore-refusals)
shared=()
for name in "${longest[@]}"; do
  f=test/integration/$name.test.ts
  [[ " ${files[*]} " == *" $f "* ]] && shared+=("$f")
done
for f in "${files[@]}"; do
  [[ " ${exclusive[*]} ${shared[*]} " == *" $f "* ]] || shared+=("$f")
done
rc=0
echo "=== ${#shared[@]} integration files, $lanes at a time"
run --test-concurrency="$lanes" "${shared[@]}" || rc=$?
echo ""
echo "=== integration files that stop a shared server or read its binlog head, run alone: ${exclusive[*]}"
run --test-concurrency=1 "${exclusive[@]}" || rc=$?
exit "$rc"
