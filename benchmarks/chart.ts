/**
 * The chart of the latest benchmark results: benchmarks/results/chart.svg, generated from the
 * JSON files every benchmark writes (benchmarks/lib/bench-report.ts) and linked from the README.
 *
 *   node --import tsx benchmarks/chart.ts
 *
 * One panel per benchmark: a bar per measurement (its median; chartlog's bars in one colour, the
 * native baselines in another, peers such as Debezium in a third), a tick per repetition so the spread shows, and the ratios and
 * goals in the panel's subtitle. Drawn with Vega-Lite, rendered to SVG without a browser.
 */
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import * as vega from 'vega';
import * as vl from 'vega-lite';
import type { BenchResult } from './lib/bench-report.js';

/** The order of the panels: the issue's list. Results with other names follow, alphabetically. */
const ORDER = ['cdc-postgres', 'cdc-mariadb', 'freshness', 'kafka-clients', 'restore', 'memory', 'codec'];

const dir = new URL('./results/', import.meta.url);

function loadResults(): BenchResult[] {
  const results: BenchResult[] = [];
  for (const f of readdirSync(dir).filter((n) => n.endsWith('.json')).sort()) {
    const r = JSON.parse(readFileSync(new URL(f, dir), 'utf8')) as Partial<BenchResult>;
    // Results not in the shared format (written before it, or assembled by hand from several
    // processes, as archive-memory-synthesis.json is) are not charted, and are named.
    const shared = Array.isArray(r.measurements) && r.measurements.length > 0 && Array.isArray(r.ratios) && Array.isArray(r.goals) && r.machine !== undefined;
    if (shared) results.push(r as BenchResult);
    else console.log(`not charted: ${f} (not in the format of benchmarks/lib/bench-report.ts)`);
  }
  const rank = (b: BenchResult): number => (ORDER.includes(b.benchmark) ? ORDER.indexOf(b.benchmark) : ORDER.length);
  return results.sort((a, b) => rank(a) - rank(b) || a.benchmark.localeCompare(b.benchmark));
}

function subtitle(r: BenchResult): string[] {
  const lines = r.ratios.map((x) => `${x.name}: ${x.value}×${x.goal ? ` (goal ${x.goal}: ${x.met ? 'met' : 'missed'})` : ''}`);
  for (const g of r.goals) lines.push(`${g.goal}: ${g.value} ${g.unit} (${g.met ? 'met' : 'missed'})`);
  lines.push(`${r.date.slice(0, 10)}, ${r.machine.cores} cores, load ${r.machine.loadAverage1mBefore}→${r.machine.loadAverage1mAfter}`);
  return lines;
}

function panel(r: BenchResult): vl.TopLevelSpec['vconcat' & keyof vl.TopLevelSpec] {
  const bars = r.measurements.map((m) => ({ name: m.name, unit: m.unit, role: m.role, median: m.median, max: m.max, label: `${m.median.toLocaleString('en-US')} ${m.unit}${m.better === 'lower' ? ' (lower is better)' : ''}` }));
  const reps = r.measurements.flatMap((m) => m.reps.map((v) => ({ name: m.name, value: v })));
  // Panels with mixed units (e.g. ms and rows/s) get one independent axis per unit row.
  const units = [...new Set(r.measurements.map((m) => m.unit))];
  const layerFor = (unit: string): object => ({
    height: { step: 22 },
    width: 520,
    layer: [
      {
        data: { values: bars.filter((b) => b.unit === unit) },
        mark: { type: 'bar', tooltip: true },
        encoding: {
          y: { field: 'name', type: 'nominal', sort: null, title: null, axis: { labelLimit: 330 } },
          x: { field: 'median', type: 'quantitative', title: `median ${unit}` },
          color: { field: 'role', type: 'nominal', scale: { domain: ['chartlog', 'baseline', 'peer', 'detail'], range: ['#2b6cb0', '#c05621', '#6b46c1', '#a0aec0'] }, legend: { title: null, orient: 'bottom' } },
        },
      },
      {
        data: { values: bars.filter((b) => b.unit === unit) },
        // Right of the highest repetition, so the ticks never cover the figure.
        mark: { type: 'text', align: 'left', dx: 5, fontSize: 10 },
        encoding: { y: { field: 'name', type: 'nominal', sort: null }, x: { field: 'max', type: 'quantitative' }, text: { field: 'label' } },
      },
      {
        data: { values: reps.filter((p) => bars.some((b) => b.name === p.name && b.unit === unit)) },
        mark: { type: 'tick', color: '#1a202c', thickness: 1.5 },
        encoding: { y: { field: 'name', type: 'nominal', sort: null }, x: { field: 'value', type: 'quantitative' } },
      },
    ],
  });
  return {
    title: { text: r.title, subtitle: subtitle(r), anchor: 'start', fontSize: 14, subtitleFontSize: 11 },
    vconcat: units.map(layerFor),
    resolve: { scale: { x: 'independent' } },
  } as never;
}

const results = loadResults();
if (results.length === 0) {
  console.error('error: no benchmark results in benchmarks/results/: run `npm run bench` first');
  process.exit(2);
}
const spec: vl.TopLevelSpec = {
  $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
  title: { text: 'chartlog benchmarks: medians, ticks are repetitions', anchor: 'start', fontSize: 16 },
  config: { font: 'DejaVu Sans, Helvetica, Arial, sans-serif', view: { stroke: null }, concat: { spacing: 36 } },
  background: 'white',
  padding: 16,
  vconcat: results.map(panel),
  resolve: { scale: { color: 'shared' } },
} as vl.TopLevelSpec;
const view = new vega.View(vega.parse(vl.compile(spec).spec), { renderer: 'none' });
const svg = await view.toSVG();
writeFileSync(new URL('chart.svg', dir), svg);
console.log(`wrote benchmarks/results/chart.svg (${results.length} benchmarks: ${results.map((r) => r.benchmark).join(', ')})`);
