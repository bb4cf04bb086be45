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
  unit) flags=() ;;
  # Integration tests share the servers of services.sh, so they run one file at a time.
  integration) flags=(--test-concurrency=1) ;;
  *) echo "usage: $0 unit|integration [FILE...]" >&2; exit 2 ;;
esac
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
exec node --import tsx --test --test-reporter=spec \
  --test-timeout="${CHARTLOG_TEST_TIMEOUT_MS:-1500000}" "${flags[@]}" "${files[@]}"
