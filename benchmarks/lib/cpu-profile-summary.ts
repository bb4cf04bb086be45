/**
 * Where a process's CPU time went, from a V8 `.cpuprofile` (node --cpu-prof): self time per
 * area of the code (chartlog folder or package), per file and per function, as milliseconds and
 * percentages of the profile's samples.
 *
 *   node --import tsx benchmarks/lib/cpu-profile-summary.ts FILE.cpuprofile [--top 25] [--from-ms T] [--to-ms U]
 *
 * --from-ms skips the first T ms of the profile (e.g. process start-up and module loading);
 * --to-ms stops at U ms (one phase of a benchmark that times several, one after the other).
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

export interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
export interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

/** The area a script belongs to: a chartlog folder, a package, Node itself, or V8's own buckets. */
export function areaOf(url: string, functionName: string): string {
  if (!url) return functionName.startsWith('(') ? functionName : '(native)';
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (pkg) return pkg[1]!;
  if (url.startsWith('node:')) return 'node:internal';
  const own = /\/(src\/[^/]+|connectors\/[^/]+|benchmarks|test)\//.exec(url);
  if (own) return own[1]!;
  return url;
}

export interface Summary {
  totalMs: number;
  byArea: [string, number][];
  byFile: [string, number][];
  byFunction: [string, number][];
  /** Time with the function anywhere on the (synchronous) stack; an async function counts per resumption. */
  inclusive: [string, number][];
}

function shorten(url: string): string {
  return url.replace(/^file:\/\//, '').replace(/^.*\/(node_modules\/)/, '$1').replace(/^.*\/main\//, '');
}

export function summarise(profile: CpuProfile, fromMs = 0, toMs = Number.POSITIVE_INFINITY): Summary {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const self = new Map<number, number>();
  let t = 0;
  let total = 0;
  for (let i = 0; i < profile.samples.length; i++) {
    const dt = (profile.timeDeltas[i] ?? 0) / 1000;
    t += dt;
    if (t < fromMs || t > toMs) continue;
    self.set(profile.samples[i]!, (self.get(profile.samples[i]!) ?? 0) + dt);
    total += dt;
  }
  const area = new Map<string, number>();
  const file = new Map<string, number>();
  const fn = new Map<string, number>();
  const add = (m: Map<string, number>, k: string, v: number) => m.set(k, (m.get(k) ?? 0) + v);
  for (const [id, ms] of self) {
    const { url, functionName, lineNumber } = byId.get(id)!.callFrame;
    const short = shorten(url);
    add(area, areaOf(url, functionName), ms);
    add(file, short || functionName || '(native)', ms);
    add(fn, `${functionName || '(anonymous)'} ${short}:${lineNumber + 1}`, ms);
  }
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const inclusive = new Map<string, number>();
  for (const [id, ms] of self) {
    const seen = new Set<string>();
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
      const { url, functionName, lineNumber } = byId.get(at)!.callFrame;
      if (!functionName || functionName.startsWith('(')) continue;
      seen.add(`${functionName} ${shorten(url)}:${lineNumber + 1}`);
    }
    for (const k of seen) add(inclusive, k, ms);
  }
  const sorted = (m: Map<string, number>) => [...m].sort((a, b) => b[1] - a[1]);
  return { totalMs: total, byArea: sorted(area), byFile: sorted(file), byFunction: sorted(fn), inclusive: sorted(inclusive) };
}

export function formatSummary(s: Summary, top = 25): string {
  const lines: string[] = [`CPU profile: ${(s.totalMs / 1000).toFixed(2)} s of samples`];
  const table = (title: string, rows: [string, number][]) => {
    lines.push('', title);
    for (const [k, ms] of rows.slice(0, top)) lines.push(`${((ms / s.totalMs) * 100).toFixed(1).padStart(5)}%  ${ms.toFixed(0).padStart(7)} ms  ${k}`);
  };
  table('self time by area', s.byArea);
  table('self time by file', s.byFile);
  table('self time by function', s.byFunction);
  table('inclusive time by function (synchronous stacks)', s.inclusive);
  return lines.join('\n');
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values, positionals } = parseArgs({ allowPositionals: true, options: { top: { type: 'string', default: '25' }, 'from-ms': { type: 'string', default: '0' }, 'to-ms': { type: 'string' } } });
  if (positionals.length !== 1) {
    console.error('usage: cpu-profile-summary.ts FILE.cpuprofile [--top N] [--from-ms T] [--to-ms U]');
    process.exit(2);
  }
  const profile = JSON.parse(readFileSync(positionals[0]!, 'utf8')) as CpuProfile;
  console.log(formatSummary(summarise(profile, Number(values['from-ms']), values['to-ms'] === undefined ? undefined : Number(values['to-ms'])), Number(values.top)));
}
