#!/usr/bin/env bash
# `npm test`: lint, type check, unit tests, then integration tests against the real servers of
# scripts/services.sh. Brings the servers up (and down again at exit) unless they already run,
# in which case it uses them and leaves them running.
#
# Every phase runs even when an earlier one failed, so one CI run reports everything; the exit
# code is non-zero when any phase failed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=lib/common.sh
. scripts/lib/common.sh

failed=()
summary=()
# Each test tier's output is also kept here, so that the end of the run can repeat what failed:
# CI shows the tail of a long log, and the failures of the unit tier would scroll out of it.
logs=$(mktemp -d "${TMPDIR:-/tmp}/chartlog-test-logs.XXXXXX")

phase() {
  local name=$1 t0 rc=0
  shift
  say ""
  say "=== $name"
  t0=$(now_ms)
  "$@" || rc=$?
  summary+=("$(printf '%-18s %8s s  %s' "$name" "$(elapsed "$t0")" "$( ((rc == 0)) && echo ok || echo "FAILED ($rc)")")")
  ((rc == 0)) || failed+=("$name")
  return 0
}

report() {
  say ""
  say "=== summary"
  local line
  for line in "${summary[@]}"; do say "$line"; done
}

services_up() {
  if bash scripts/services.sh status >/dev/null 2>&1; then
    say "services already running; using them and leaving them up"
    return 0
  fi
  trap 'bash scripts/services.sh down || true' EXIT
  bash scripts/services.sh up
}

integration() {
  local env
  env=$(bash scripts/services.sh env) || return 1
  eval "$env"
  tier integration npm run --silent test:integration
}

started=$(now_ms)
phase lint npx eslint .
phase typecheck npx tsc --noEmit -p tsconfig.json
tier() {
  local name=$1
  shift
  "$@" 2>&1 | tee "$logs/$name.log"
}

# failing NAME: the "failing tests" sections the spec reporter prints at the end of each run of a
# tier (the integration tier has two runs), without the output that follows them.
failing() {
  [[ -f $logs/$1.log ]] || return 0
  awk '/failing tests:/ { on = 1 } /^=== / { on = 0 } on' "$logs/$1.log"
}
# failed_names NAME: one line per failed test, "file:line name", for the last lines of the run:
# CI shows only the tail of a long log, and it must name what failed.
failed_names() {
  failing "$1" | awk '/^test at / { at = $3 } /^✖ / && !/failing tests:/ { sub(/^✖ /, ""); print "  " at "  " substr($0, 1, 160) }' |
    head -n 12
}

phase unit tier unit npm run --silent test:unit
phase services services_up
if [[ " ${failed[*]} " == *" services "* ]]; then
  summary+=("integration        skipped: the services did not start")
  failed+=(integration)
else
  phase integration integration
fi
for f in "${failed[@]}"; do
  if [[ $f == unit || $f == integration ]]; then
    say ""
    say "=== what failed in $f (the whole output is above)"
    failing "$f" | head -n 80 >&2
  fi
done
report
for f in "${failed[@]}"; do
  if [[ $f == unit || $f == integration ]]; then
    say "failed in $f:"
    failed_names "$f" >&2
  fi
done
say "total: $(elapsed "$started") s"
rm -rf "$logs"
if ((${#failed[@]})); then
  say "FAILED: ${failed[*]}"
  exit 1
fi
say "all passed"
