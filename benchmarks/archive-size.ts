/**
 * Where an archive's bytes go (issue 15, item 4): reads every object under a file:// backup root
 * and attributes each byte of every record to a field group, uncompressed and compressed.
 *
 *   node --import tsx benchmarks/archive-size.ts <backup dir> [--dump <pg_dump -Fc file>] [--label TEXT] [--out FILE]
 *
 * (`KEEP=1 node --import tsx benchmarks/restore.bench.ts …` keeps its work directory: the backup
 * root is <work>/backup, the dump <work>/patients.dump.)
 *
 * - Per object kind: base-snapshot parts, flush parts (open hours), segments (closed hours),
 *   manifests, schemas, keys, state: bytes on disk.
 * - Per field group of the table records (snapshot parts, segments and flush-part sections): the
 *   envelope (op, each source.* field, tsUs), union branch indexes and Avro length prefixes, each
 *   plain column, and the sealed columns split into the row seal's header fields (version, DEK id,
 *   position, set), nonce, ciphertext and tag, and references. "Uncompressed" is the bytes in the
 *   record bodies. "Compressed" is the group's marginal cost: the size of every block deflated as
 *   written minus its size deflated with that group's bytes left out (the groups' costs need not
 *   add up to the total exactly: deflate finds matches across groups).
 * - What the deflate level and the block size (records per block) would make of the same record
 *   bodies.
 *
 * - With --patients (the backup is of benchmarks/lib/patient-workload.ts's table, as
 *   restore.bench.ts writes it): what the base snapshot would cost with PHI sealed per block
 *   instead of per row (docs/formats.md, "Sealed values": why per-row sealing cannot reach 2×
 *   pg_dump -Fc). The snapshot rows' PHI plaintexts are rebuilt from the workload's formulas and
 *   checked byte-length-equal to every row seal's ciphertext; nothing is decrypted.
 *
 * Writes benchmarks/results/archive-size.json (or --out).
 */
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { parseArgs } from 'node:util';
import { brotliCompressSync, constants as zlibConstants, deflateRawSync } from 'node:zlib';
import { openAvroContainer } from '../src/archive/avro-container.js';
import { flushPartSection, flushPartToc } from '../src/archive/flush-part.js';
import { ROW_SEAL_REFERENCE } from '../src/phi/row-seal.js';

const { values: args, positionals } = parseArgs({
  allowPositionals: true,
  options: { dump: { type: 'string' }, label: { type: 'string', default: '' }, out: { type: 'string' }, patients: { type: 'boolean', default: false } },
});
const root = positionals[0];
if (!root) {
  console.error('usage: archive-size.ts <backup dir> [--dump FILE] [--label TEXT] [--out FILE]');
  process.exit(2);
}

type AvroType = string | { type: string; name?: string; namespace?: string; fields?: { name: string; type: AvroType }[]; items?: AvroType; values?: AvroType; symbols?: string[]; size?: number } | AvroType[];

/** One record's bytes, each tagged with a group (index into `groups`). */
const groups: string[] = [];
const groupIndex = new Map<string, number>();
function g(name: string): number {
  let i = groupIndex.get(name);
  if (i === undefined) {
    i = groups.length;
    groups.push(name);
    groupIndex.set(name, i);
  }
  return i;
}

/** Walks one Avro binary value of `type` at `at`, tagging bytes in `tags`; returns the end. */
class Walker {
  private readonly named = new Map<string, AvroType>();
  constructor(
    private readonly buf: Buffer,
    private readonly tags: Uint8Array,
    private readonly sealed: ReadonlySet<string>,
  ) {}
  at = 0;
  /** Per record (the benchmark table's what-if): the plain `id`, and the row seal's ciphertext length. */
  readonly ids: number[] = [];
  readonly ciphertextLengths: number[] = [];

  private varint(group: number): number {
    let n = 0n;
    let shift = 0n;
    for (;;) {
      const b = this.buf[this.at]!;
      this.tags[this.at++] = group;
      n |= BigInt(b & 0x7f) << shift;
      if (b < 0x80) break;
      shift += 7n;
    }
    return Number((n >> 1n) ^ -(n & 1n));
  }

  private span(n: number, group: number): void {
    this.tags.fill(group, this.at, this.at + n);
    this.at += n;
  }

  register(t: AvroType, ns = ''): void {
    if (Array.isArray(t)) return t.forEach((x) => this.register(x, ns));
    if (typeof t !== 'object') return;
    if (t.name) {
      const space = t.namespace ?? ns;
      const full = t.name.includes('.') ? t.name : space ? `${space}.${t.name}` : t.name;
      this.named.set(t.name, t);
      this.named.set(full, t);
    }
    for (const f of t.fields ?? []) this.register(f.type, ns);
    if (t.items) this.register(t.items, ns);
    if (t.values) this.register(t.values, ns);
  }

  /** `path` names the group: envelope fields by name, columns by column (sealed ones split further). */
  value(t: AvroType, path: string): void {
    if (Array.isArray(t)) {
      const branch = this.varint(g('avro: union branch indexes'));
      return this.value(t[branch]!, path);
    }
    if (typeof t === 'string') {
      const named = this.named.get(t);
      if (named) return this.value(named, path);
      return this.primitive(t, path);
    }
    switch (t.type) {
      case 'record':
        for (const f of t.fields!) this.value(f.type, this.fieldPath(path, f.name));
        return;
      case 'enum':
        this.varint(g(`${path} (marker)`));
        return;
      case 'array':
      case 'map':
        for (let n = this.varint(g('avro: length prefixes')); n !== 0; n = this.varint(g('avro: length prefixes'))) {
          if (n < 0) {
            n = -n;
            this.varint(g('avro: length prefixes'));
          }
          for (let i = 0; i < n; i++) {
            if (t.type === 'map') this.primitive('string', path);
            this.value((t.items ?? t.values)!, path);
          }
        }
        return;
      case 'fixed':
        return this.span(t.size!, g(path));
      default:
        return this.primitive(t.type, path);
    }
  }

  private fieldPath(path: string, name: string): string {
    if (path === '') return name === 'before' || name === 'after' ? 'image' : `envelope: ${name}`;
    if (path === 'image') return this.sealed.has(name) ? `sealed` : `plain column: ${name}`;
    return `${path}.${name}`;
  }

  private primitive(t: string, path: string): void {
    switch (t) {
      case 'null':
        return;
      case 'boolean':
        return this.span(1, g(path));
      case 'int':
      case 'long': {
        const v = this.varint(g(path));
        if (path === 'plain column: id') this.ids.push(v);
        return;
      }
      case 'float':
        return this.span(4, g(path));
      case 'double':
        return this.span(8, g(path));
      case 'string':
      case 'bytes': {
        const n = this.varint(g('avro: length prefixes'));
        if (path === 'sealed') return this.sealedValue(n);
        return this.span(n, g(path));
      }
    }
    throw new Error(`unknown Avro type ${t}`);
  }

  /** A sealed cell: a format-3 or -4 row seal, a reference, or (older formats) a per-value seal. */
  private sealedValue(n: number): void {
    const b = this.buf;
    const v = b[this.at]!;
    if (v === ROW_SEAL_REFERENCE && n === 9) {
      this.span(1, g('seal: reference tag'));
      this.span(8, g('seal: reference nonce prefix'));
      return;
    }
    if (v !== 0x03 && v !== 0x04) return this.span(n, g(`seal: other format ${v}`));
    const end = this.at + n;
    this.span(1, g('seal: version'));
    this.span(16, g('seal: DEK id'));
    const p = b[this.at]!;
    this.span(1 + p + 4, g('seal: position'));
    const m = b[this.at]!;
    this.span(1 + m, g('seal: set'));
    // The nonce's length is the DEK's algorithm: 12 (AES-256-GCM) or 24 (XChaCha20-Poly1305).
    const nonce = nonceBytes;
    this.span(nonce, g('seal: nonce'));
    this.ciphertextLengths.push(end - this.at - 16);
    this.span(end - this.at - 16, g('seal: ciphertext'));
    this.span(16, g('seal: tag'));
  }
}

let nonceBytes = 12;

interface Block {
  body: Buffer;
  tags: Uint8Array;
  records: number;
  kind: string;
  ids: number[];
  ciphertextLengths: number[];
}

const kinds = new Map<string, { objects: number; bytes: number }>();
const blocks: Block[] = [];
const recordKinds = new Map<string, { records: number; bodyBytes: number; storedBytes: number }>();

function addKind(k: string, bytes: number): void {
  const e = kinds.get(k) ?? { objects: 0, bytes: 0 };
  e.objects++;
  e.bytes += bytes;
  kinds.set(k, e);
}

function readContainer(file: Buffer, name: string, kind: string): void {
  const { header, blocks: bs } = openAvroContainer(file, name);
  const schema = JSON.parse(header.schema) as { fields: { name: string }[]; 'chartlog.table'?: { columns: { field: string; sealed: boolean }[] } };
  if (header.metadata['chartlog.table'] === '~transactions' || !schema['chartlog.table']) {
    // The transaction log (no row values): counted as a kind, not walked.
    for (const blk of bs) {
      const e = recordKinds.get(`${kind}: ~transactions`) ?? { records: 0, bodyBytes: 0, storedBytes: 0 };
      e.records += blk.count;
      e.bodyBytes += blk.data.length;
      recordKinds.set(`${kind}: ~transactions`, e);
    }
    return;
  }
  const sealed = new Set(schema['chartlog.table'].columns.filter((c) => c.sealed).map((c) => c.field));
  const e = recordKinds.get(kind) ?? { records: 0, bodyBytes: 0, storedBytes: 0 };
  for (const blk of bs) {
    const tags = new Uint8Array(blk.data.length);
    const w = new Walker(blk.data, tags, sealed);
    w.register(schema as unknown as AvroType);
    for (let i = 0; i < blk.count; i++) w.value(schema as unknown as AvroType, '');
    if (w.at !== blk.data.length) throw new Error(`${name}: ${blk.data.length - w.at} bytes left after the records`);
    blocks.push({ body: blk.data, tags, records: blk.count, kind, ids: w.ids, ciphertextLengths: w.ciphertextLengths });
    e.records += blk.count;
    e.bodyBytes += blk.data.length;
    e.storedBytes += deflateRawSync(blk.data, { level: 6 }).length;
  }
  recordKinds.set(kind, e);
}

function walk(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => join(e.parentPath, e.name));
}

// Which AEAD the data keys use (nonce length).
for (const f of walk(root)) if (/\/keys\/[0-9a-f]{32}\.json$/.test(f)) nonceBytes = (JSON.parse(readFileSync(f, 'utf8')) as { algorithm?: string }).algorithm === 'XChaCha20-Poly1305' ? 24 : 12;

for (const f of walk(root)) {
  const rel = '/' + relative(root, f);
  const size = statSync(f).size;
  const kind = /\/snapshots\/.*\.avro$/.test(rel)
    ? 'base snapshot parts'
    : /\/parts\/.*~flush\//.test(rel)
      ? 'flush parts (open hours)'
      : /\/parts\//.test(rel)
        ? 'per-table parts (open hours)'
        : /\/segments\//.test(rel)
          ? 'segments (closed hours)'
          : /\/manifests\/|\/snapshots\/.*manifest\.json$/.test(rel)
            ? 'manifests'
            : /\/schemas\//.test(rel)
              ? 'schemas'
              : /\/keys\//.test(rel)
                ? 'keys'
                : 'state, audit and other';
  addKind(kind, size);
  if (!rel.endsWith('.avro')) continue;
  const file = readFileSync(f);
  if (kind.startsWith('flush')) {
    const toc = flushPartToc(file, rel);
    for (let i = 0; i < toc.length; i++) readContainer(flushPartSection(file, rel, i).container, rel, kind);
  } else readContainer(file, rel, kind);
}

// Per group: uncompressed bytes, and the marginal compressed cost (level 6, blocks as written).
const total = { body: 0, deflated: 0 };
const perGroup = groups.map(() => ({ bytes: 0, without: 0 }));
for (const b of blocks) {
  total.body += b.body.length;
  total.deflated += deflateRawSync(b.body, { level: 6 }).length;
  for (let i = 0; i < b.tags.length; i++) perGroup[b.tags[i]!]!.bytes++;
  for (let gi = 0; gi < groups.length; gi++) {
    let n = 0;
    for (let i = 0; i < b.tags.length; i++) if (b.tags[i] !== gi) n++;
    if (n === b.tags.length) {
      perGroup[gi]!.without += deflateRawSync(b.body, { level: 6 }).length;
      continue;
    }
    const rest = Buffer.allocUnsafe(n);
    let k = 0;
    for (let i = 0; i < b.tags.length; i++) if (b.tags[i] !== gi) rest[k++] = b.body[i]!;
    perGroup[gi]!.without += deflateRawSync(rest, { level: 6 }).length;
  }
}
const rows = groups
  .map((name, i) => ({ group: name, bytes: perGroup[i]!.bytes, compressedCost: total.deflated - perGroup[i]!.without }))
  .sort((a, b) => b.compressedCost - a.compressedCost);
const records = blocks.reduce((n, b) => n + b.records, 0);

// Deflate level and block size, over the same record bodies in the same order.
const allBodies = blocks.map((b) => ({ body: b.body, records: b.records }));
function rebuilt(level: number, recordsPerBlock: number): number {
  // Blocks as written hold ≤ 4096 records; regroup whole blocks (bodies keep their order).
  let size = 0;
  let pending: Buffer[] = [];
  let pendingRecords = 0;
  const flush = () => {
    if (pending.length) size += deflateRawSync(Buffer.concat(pending), { level }).length;
    pending = [];
    pendingRecords = 0;
  };
  for (const b of allBodies) {
    pending.push(b.body);
    pendingRecords += b.records;
    if (pendingRecords >= recordsPerBlock) flush();
  }
  flush();
  return size;
}
const levels = [1, 6, 9].map((level) => ({ level, recordsPerBlock: 4096, bytes: rebuilt(level, 4096) }));
const blockSizes = [4096, 16384, 65536].map((n) => ({ level: 6, recordsPerBlock: n, bytes: rebuilt(6, n) }));

/**
 * The what-if of --patients: the base snapshot's blocks with PHI sealed once per block. Rebuilds
 * each snapshot row's PHI plaintext (format 4: per column LEB128 length ‖ tag 5 ‖ UTF-8) from the
 * workload's formulas, checks its length against the row seal's ciphertext, and sizes:
 * - the record bodies without any row-seal byte (header, nonce, ciphertext, tag, references),
 *   deflated as written (level 6), plus a 2-byte row index a row (raw, an upper bound);
 * - the block's PHI plaintexts laid out column by column, deflated (level 6 and 9), plus one
 *   header, nonce and tag a block (80 bytes: version, DEK id, position, set, 24-byte nonce, tag);
 * - the same with external_id (a uuid, 36 characters of text today) as 16 bytes.
 */
function blockSealWhatIf(): Record<string, unknown> | null {
  const snap = blocks.filter((b) => b.kind === 'base snapshot parts');
  if (!snap.length) return null;
  const phi = (n: number): string[] => [
    `Synthetic Patient ${n}`,
    `900-${String(n % 100).padStart(2, '0')}-${String(n % 10000).padStart(4, '0')}`,
    new Date(Date.UTC(1940, 0, 1) + (n % 20000) * 86_400_000).toISOString().slice(0, 10),
    `${n} Synthetic Street, Testville`,
  ];
  const sealGroups = new Set(groups.map((name, i) => (name.startsWith('seal: ') ? i : -1)).filter((i) => i >= 0));
  const ext = groupIndex.get('plain column: external_id');
  const HEADER = 1 + 16 + (1 + 16 + 4) + 2 + 24 + 16;
  const out = { records: 0, asWritten: 0, plainDeflated: 0, plainDeflatedUuid16: 0, rowIndexes: 0, phiPlaintext: 0, phiRowWise6: 0, phiColumnWise6: 0, phiColumnWise9: 0, phiColumnWiseBrotli: 0, blockHeaders: 0 };
  for (const b of snap) {
    if (b.ids.length !== b.records || b.ciphertextLengths.length !== b.records) throw new Error('--patients: a snapshot record without an id or a row seal');
    out.records += b.records;
    out.asWritten += deflateRawSync(b.body, { level: 6 }).length;
    const keep: number[] = [];
    const keep16: number[] = [];
    for (let i = 0; i < b.body.length; ) {
      const t = b.tags[i]!;
      if (sealGroups.has(t)) {
        i++;
        continue;
      }
      if (t === ext && b.tags[i + 35] === ext) {
        const hex = b.body.subarray(i, i + 36).toString('latin1').replaceAll('-', '');
        for (const x of Buffer.from(hex, 'hex')) keep16.push(x);
        for (let k = 0; k < 36; k++) keep.push(b.body[i + k]!);
        i += 36;
        continue;
      }
      keep.push(b.body[i]!);
      keep16.push(b.body[i]!);
      i++;
    }
    out.plainDeflated += deflateRawSync(Buffer.from(keep), { level: 6 }).length;
    out.plainDeflatedUuid16 += deflateRawSync(Buffer.from(keep16), { level: 6 }).length;
    out.rowIndexes += 2 * b.records;
    const rows = b.ids.map(phi);
    const cell = (v: string) => Buffer.concat([Buffer.from([v.length + 1, 5]), Buffer.from(v, 'utf8')]);
    rows.forEach((r, i) => {
      const n = r.reduce((s, v) => s + 2 + Buffer.byteLength(v), 0);
      if (n !== b.ciphertextLengths[i]) throw new Error(`--patients: row ${b.ids[i]}: rebuilt plaintext ${n} bytes, ciphertext ${b.ciphertextLengths[i]} (not the workload's table, or changed rows in the snapshot)`);
    });
    const rowWise = Buffer.concat(rows.flatMap((r) => r.map(cell)));
    const columnWise = Buffer.concat([0, 1, 2, 3].flatMap((c) => rows.map((r) => cell(r[c]!))));
    out.phiPlaintext += rowWise.length;
    out.phiRowWise6 += deflateRawSync(rowWise, { level: 6 }).length;
    out.phiColumnWise6 += deflateRawSync(columnWise, { level: 6 }).length;
    out.phiColumnWise9 += deflateRawSync(columnWise, { level: 9 }).length;
    out.phiColumnWiseBrotli += brotliCompressSync(columnWise, { params: { [zlibConstants.BROTLI_PARAM_QUALITY]: 9 } }).length;
    out.blockHeaders += HEADER;
  }
  const blockSeal = out.plainDeflated + out.rowIndexes + out.phiColumnWise6 + out.blockHeaders;
  const blockSealUuid16 = out.plainDeflatedUuid16 + out.rowIndexes + out.phiColumnWise6 + out.blockHeaders;
  const perRow = (n: number) => Math.round((n / out.records) * 10) / 10;
  return {
    ...out,
    perRow: Object.fromEntries(Object.entries(out).filter(([k]) => k !== 'records').map(([k, v]) => [k, perRow(v)])),
    blockSeal,
    blockSealPerRow: perRow(blockSeal),
    blockSealUuid16,
    blockSealUuid16PerRow: perRow(blockSealUuid16),
  };
}
const whatIf = args.patients ? blockSealWhatIf() : null;

const MiB = (n: number) => Math.round((n / 2 ** 20) * 100) / 100;
const archiveBytes = [...kinds.values()].reduce((n, k) => n + k.bytes, 0);
const dumpBytes = args.dump ? statSync(args.dump).size : null;
const result = {
  benchmark: 'archive-size',
  title: 'Where the archive bytes go',
  date: new Date().toISOString(),
  command: `node --import tsx benchmarks/archive-size.ts ${process.argv.slice(2).join(' ')}`,
  label: args.label,
  archiveBytes,
  archiveMiB: MiB(archiveBytes),
  pgDumpBytes: dumpBytes,
  ratioToPgDump: dumpBytes ? Math.round((archiveBytes / dumpBytes) * 100) / 100 : null,
  nonceBytes,
  objectKinds: Object.fromEntries([...kinds].map(([k, v]) => [k, { ...v, MiB: MiB(v.bytes) }])),
  tableRecords: {
    records,
    bodyBytes: total.body,
    deflatedLevel6Bytes: total.deflated,
    perKind: Object.fromEntries(recordKinds),
  },
  fieldGroups: rows.map((r) => ({ ...r, bytesPerRecord: Math.round((r.bytes / records) * 10) / 10, compressedPerRecord: Math.round((r.compressedCost / records) * 10) / 10 })),
  deflateLevels: levels,
  blockSizes,
  ...(whatIf ? { blockSealWhatIf: whatIf } : {}),
};
writeFileSync(args.out ?? join(import.meta.dirname, 'results', 'archive-size.json'), JSON.stringify(result, null, 2) + '\n');
console.log(`archive ${MiB(archiveBytes)} MiB${dumpBytes ? `, pg_dump -Fc ${MiB(dumpBytes)} MiB (${result.ratioToPgDump}×)` : ''}; ${records} table records, ${MiB(total.body)} MiB of bodies, ${MiB(total.deflated)} MiB deflated (level 6)`);
for (const [k, v] of kinds) console.log(`  ${k.padEnd(32)} ${String(v.objects).padStart(5)} objects ${MiB(v.bytes).toFixed(2).padStart(8)} MiB`);
console.log(`  ${'group'.padEnd(40)} ${'bytes/rec'.padStart(10)} ${'compressed/rec'.padStart(15)} ${'compressed MiB'.padStart(15)}`);
for (const r of result.fieldGroups) console.log(`  ${r.group.padEnd(40)} ${r.bytesPerRecord.toFixed(1).padStart(10)} ${r.compressedPerRecord.toFixed(1).padStart(15)} ${MiB(r.compressedCost).toFixed(2).padStart(15)}`);
if (whatIf) console.log('  block-seal what-if (base snapshot):', JSON.stringify(whatIf));
for (const l of [...levels, ...blockSizes]) console.log(`  deflate level ${l.level}, ${l.recordsPerBlock} records a block: ${MiB(l.bytes)} MiB`);
