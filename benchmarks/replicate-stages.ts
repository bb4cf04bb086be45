/**
 * The replicator's own CPU per applied row, stage by stage, in process and without a target (not
 * in `npm run bench`; for A/B runs of two checkouts on a shared machine, where CPU per row is
 * steadier than a wall-clock rate): the archive of a kept `replicate.bench.ts` run (its backlog
 * of 100-row transactions after the base snapshot) is followed from the snapshot's position as
 * `chartlog replicate --phi open` follows it — read (ArchiveFollower.read until nothing is left),
 * plan, decode with PHI opened (the crypto thread included), grouped, and each group's PostgreSQL
 * statements built (positionSql + batchSql) — and each stage's CPU (user + system, every thread)
 * is printed per row. What a target's driver and server do is not in it (replicate.bench.ts
 * reports the server backend's CPU per row).
 *
 *   BENCH_KEEP_WORK=1 node --import tsx benchmarks/replicate.bench.ts --scale 1 --tx 1000 --reps 1   # prints "kept DIR"
 *   node --import tsx benchmarks/replicate-stages.ts --work DIR [--root OTHER-CHECKOUT] [--reps 3]
 *
 * `--root`: the checkout whose src/ is measured (default this one), e.g. a copy of main before a
 * change, run alternately with this one. Prints one JSON line per repetition.
 */
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { pathToFileURL } from 'node:url';

const { values: args } = parseArgs({ options: { work: { type: 'string' }, root: { type: 'string', default: resolve(import.meta.dirname, '..') }, reps: { type: 'string', default: '3' } } });
if (!args.work) {
  console.error('usage: replicate-stages.ts --work DIR (a kept replicate.bench.ts work dir) [--root CHECKOUT] [--reps N]');
  process.exit(2);
}
const root = resolve(args.root!);
const mod = <T>(path: string): Promise<T> => import(pathToFileURL(join(root, 'src', path)).href) as Promise<T>;

/* eslint-disable @typescript-eslint/no-explicit-any -- the modules of another checkout, typed only as far as used here */
const { loadConfig } = await mod<any>('config/load.ts');
const { FsObjectStore } = await mod<any>('storage/fs-object-store.ts');
const { readArchiveIndex } = await mod<any>('archive/archive-index.ts');
const { loadArchiveMac } = await mod<any>('archive/archive-auth.ts');
const { openArchiveCodec } = await mod<any>('archive/archive-codec.ts');
const { backupRootOf, openKeyring } = await mod<any>('phi/keyring/open-keyring.ts');
const { Position } = await mod<any>('core/position.ts');
const { ArchiveFollower } = await mod<any>('replicate/archive-follower.ts');
const { groupTransactions } = await mod<any>('replicate/transaction-groups.ts');
const { batchSql, positionSql, KEYED_BATCH_ROWS } = await mod<any>('replicate/postgres-replica-target.ts');
const { batchChanges, BATCH_ROWS } = await mod<any>('replicate/change-batches.ts');
const { configureLogger } = await mod<any>('core/logger.ts');
configureLogger({ level: 'warn', format: 'json', destination: process.stderr });

const config = loadConfig(join(args.work, 'chartlog.yaml'));
const source = config.sources[0];
const store = new FsObjectStore(join(args.work, 'backup'));
const cpu = () => {
  const c = process.cpuUsage();
  return (c.user + c.system) / 1e6;
};

for (let rep = 0; rep < Number(args.reps); rep++) {
  const times: Record<string, number> = {};
  let last = cpu();
  const lap = (name: string) => {
    const now = cpu();
    times[name] = (times[name] ?? 0) + now - last;
    last = now;
  };
  const index = await readArchiveIndex(store, source.name);
  const mac = await loadArchiveMac(store, source.name, () => openKeyring(config.phi.keyring, { backupRoot: backupRootOf(config.storage.url) }));
  const archive = openArchiveCodec(config, source, store, true, mac);
  const from = Position.parse(index.snapshots.at(-1).position);
  const follower = new ArchiveFollower(store, source.name, archive, mac, () => true);
  lap('setup');
  const started = performance.now();
  do await follower.read(from);
  while (follower.behind);
  lap('read');
  const plan = follower.plan(from, 1e9);
  lap('plan');
  const sealed = new Map<string, ReadonlySet<string>>();
  let rows = 0;
  let chars = 0;
  let at = from;
  for (let i = 0; i < plan.transactions.length; i += 50) {
    // Runs of 50 transactions (5 000 rows), decoded in requests of 2 048 records, as the replicator does.
    const run = plan.transactions.slice(i, i + 50);
    const records = run.flatMap((t: any) => t.records);
    const decoded: any[] = [];
    for (let j = 0; j < records.length; j += 2048) for (const d of await archive.codec.decodeMany(records.slice(j, j + 2048).map((r: any) => r.message), { open: true })) decoded.push(d.event);
    let k = 0;
    const txs = [];
    for (const tx of run) {
      const changes = [];
      const versions = [];
      for (const r of tx.records) {
        let set = sealed.get(r.fingerprint);
        if (!set) sealed.set(r.fingerprint, (set = (await archive.schemas.resolve(BigInt(`0x${r.fingerprint}`))).version.sealed));
        const d = decoded[k++];
        changes.push({ op: d.op, table: r.table, schema: d.schema, before: d.before, after: d.after, position: r.position, phiColumns: set });
        versions.push(r.fingerprint);
      }
      txs.push({ position: tx.position, commitTsUs: tx.commitTsUs, changes, versions });
    }
    lap('decode');
    for (const g of groupTransactions(txs)) {
      const types = new Map(g.changes[0].schema.columns.map((c: any) => [c.name, c.type.kind === 'string' ? 'text' : 'integer']));
      chars += positionSql(source.name, g.position, g.commitTsUs, at, g.transactions).length;
      for (const b of batchChanges(g.changes, BATCH_ROWS, KEYED_BATCH_ROWS)) chars += batchSql(b, 'open', 'postgres', types).length;
      at = g.position;
      rows += g.changes.length;
    }
    lap('statements');
  }
  const us = (s: number) => Math.round((s * 1e6 * 10) / rows) / 10;
  const total = Object.entries(times).filter(([k]) => k !== 'setup').reduce((n, [, v]) => n + v, 0);
  console.log(JSON.stringify({ root, rep, rows, transactions: plan.transactions.length, sqlChars: chars, wallSeconds: Math.round(performance.now() - started) / 1000, usPerRow: { read: us(times.read!), plan: us(times.plan!), decode: us(times.decode!), statements: us(times.statements!), total: us(total) } }));
}
process.exit(0);
