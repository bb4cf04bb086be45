/**
 * Where a `chartlog restore` process's time went, from the `.cpuprofile` that `node --cpu-prof`
 * writes: every sample is charged to the innermost frame on its stack that belongs to a known
 * phase (opening PHI, Avro decoding, reading the archive, replaying, writing the target,
 * start-up), so a Buffer allocation inside avsc counts as Avro decoding and AES-GCM inside
 * src/phi as opening PHI. GC and idle (waiting for the database or the disk) are their own.
 * For self time per file or function, see cpu-profile-summary.ts.
 */
import { readFileSync } from 'node:fs';
import type { CpuProfile } from './cpu-profile-summary.js';


const PHASES: [string, (url: string, fn: string) => boolean][] = [
  ['GC', (u, f) => u === '' && f === '(garbage collector)'],
  ['idle (waiting for the database, the disk)', (u, f) => u === '' && f === '(idle)'],
  ['start-up (module loading, tsx)', (u) => /node_modules\/(tsx|esbuild|@esbuild)\//.test(u) || u.startsWith('node:internal/modules')],
  ['opening PHI (AES-256-GCM, src/phi)', (u) => u.includes('/src/phi/') || u.startsWith('node:internal/crypto')],
  ['Avro decoding and value mapping (src/codec, avsc)', (u) => u.includes('/src/codec/') || u.includes('/node_modules/avsc/')],
  ['reading the archive (inflate, sha256, record split)', (u) => u.includes('/src/compactor/') || u === 'node:zlib' || u.includes('/src/storage/')],
  ['writing the target (COPY text, pg driver)', (u) => u.includes('/src/restore/targets/') || /node_modules\/(pg|pg-copy-streams|pg-protocol)\//.test(u)],
  ['replaying (apply by key, read loop; src/restore)', (u) => u.includes('/src/restore/')],
];

export interface PhaseBreakdown {
  totalMs: number;
  phases: { phase: string; ms: number; percent: number }[];
}

export function restoreProfilePhases(file: string): PhaseBreakdown {
  const p = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const phaseOfNode = new Map<number, string>();
  const phaseOf = (id: number): string => {
    let known = phaseOfNode.get(id);
    if (known) return known;
    known = 'other (Node.js, V8)';
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
      const { url, functionName } = byId.get(at)!.callFrame;
      const hit = PHASES.find(([, test]) => test(url, functionName));
      if (hit) {
        known = hit[0];
        break;
      }
    }
    phaseOfNode.set(id, known);
    return known;
  };
  const us = new Map<string, number>();
  let total = 0;
  for (let i = 0; i < p.samples.length; i++) {
    const dt = p.timeDeltas[i] ?? 0;
    total += dt;
    const phase = phaseOf(p.samples[i]!);
    us.set(phase, (us.get(phase) ?? 0) + dt);
  }
  return {
    totalMs: Math.round(total / 1000),
    phases: [...us].sort((a, b) => b[1] - a[1]).map(([phase, t]) => ({ phase, ms: Math.round(t / 1000), percent: Math.round((t / total) * 1000) / 10 })),
  };
}
