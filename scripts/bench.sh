#!/usr/bin/env bash
# `npm run bench [-- NAME...]`: the benchmarks of issue 8, one after another on the same machine,
# each measuring chartlog and its native baseline in the same run, then the chart.
#
#   npm run bench                      all of them (≈ 25 min on 2 cores)
#   npm run bench -- freshness codec   only these (names: see BENCHES below)
#
# Starts the private servers of scripts/services.sh (and stops them at the end) unless they
# already run. Results: benchmarks/results/<name>.json and benchmarks/results/chart.svg.
# Benchmarks share the machine with nothing else of ours: run them on a quiet machine, the
# load average before and after each is recorded in its JSON.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=lib/common.sh
. scripts/lib/common.sh

# name → the benchmark file; each also runs alone (`node --import tsx <file>`, options in its header).
declare -A BENCHES=(
  [codec]=benchmarks/codec.bench.ts
  [seal-options]=benchmarks/seal-options.bench.ts
  [freshness]=benchmarks/freshness.bench.ts
  [cdc-postgres]=benchmarks/cdc-postgres.bench.ts
  [cdc-mariadb]=benchmarks/cdc-mariadb.bench.ts
  [restore]=benchmarks/restore.bench.ts
  [memory]=benchmarks/memory.bench.ts
)
ORDER=(seal-options codec cdc-postgres cdc-mariadb memory restore freshness)
# memory measures chartlog's MariaDB half as installed (--built: dist/ compiled, no tsx in the
# process), the form a hospital runs from the package or the image; its results also keep the
# same code run from the source checkout (tsx adds ~30 MiB) as a detail figure. The issue-14
# goal (1M-row MariaDB transaction ≤ 300 MB peak RSS) is judged on the installed form.
declare -A BENCH_ARGS=([memory]="--built")

names=("$@")
((${#names[@]})) || names=("${ORDER[@]}")
for n in "${names[@]}"; do
  [[ -n ${BENCHES[$n]:-} ]] || { say "error: unknown benchmark \"$n\": expected one of ${ORDER[*]}"; exit 2; }
done

if bash scripts/services.sh status >/dev/null 2>&1; then
  say "services already running; using them and leaving them up"
else
  trap 'bash scripts/services.sh down || true' EXIT
  bash scripts/services.sh up
fi
eval "$(bash scripts/services.sh env)"

failed=()
summary=()
for n in "${names[@]}"; do
  say ""
  say "=== bench $n"
  t0=$(now_ms)
  rc=0
  read -ra extra <<<"${BENCH_ARGS[$n]:-}"
  node --import tsx "${BENCHES[$n]}" "${extra[@]}" || rc=$?
  summary+=("$(printf '%-14s %9s s  %s' "$n" "$(elapsed "$t0")" "$( ((rc == 0)) && echo ok || echo "FAILED ($rc)")")")
  ((rc == 0)) || failed+=("$n")
done

say ""
say "=== chart"
node --import tsx benchmarks/chart.ts

say ""
say "=== summary"
for line in "${summary[@]}"; do say "$line"; done
if ((${#failed[@]})); then
  say "FAILED: ${failed[*]}"
  exit 1
fi
