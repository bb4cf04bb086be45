import { createHash } from 'node:crypto';
import { ChartlogError } from '../core/errors.js';
import type { ChangeBatch } from '../core/change-event.js';
import { logger } from '../core/logger.js';
import { Position } from '../core/position.js';
import { withRetry } from '../core/retry.js';
import { qualifiedName } from '../core/table-schema.js';
import type { ObjectStore } from '../storage/object-store.js';
import { snapshotManifestKey, snapshotsPrefix, tableSnapshotManifestKey, tableSnapshotsPrefix, type SnapshotManifest, type SnapshotTable } from '../archive/snapshot-manifest.js';
import type { BusMessage } from '../codec/bus-message.js';
import { recordBody } from '../codec/single-object.js';
import { AvroContainerWriter, BLOCK_RECORDS } from '../archive/avro-container.js';
import { sha256Hex } from '../archive/manifest.js';
import type { BatchEncoder } from '../codec/batch-encoder.js';
import type { SchemaSource } from '../archive/envelope-reader.js';
import type { WriterFence } from '../archive/lease.js';
import type { ArchiveSigner } from '../phi/archive-mac.js';
import { BlockOrdinals } from '../phi/block-seal.js';

interface OpenPart {
  table: string;
  fingerprint: string;
  key: string;
  /** Rows of the part; `bodies` holds those not yet in a block. */
  rows: number;
  bodies: Uint8Array[];
  bytes: number;
  container: AvroContainerWriter;
  /** The block being compressed (blocks are appended in order, one at a time). */
  compressing: Promise<void>;
}

const PART_BYTES = 32 * 1024 * 1024;

/**
 * Writes one snapshot's rows, already encoded (Avro single-object messages), as Avro containers
 * per table under snapshots/<id>/ — rolled at PART_BYTES or when the table version changes, so
 * memory stays bounded — and then its manifest. Shared by connector snapshots (`writeSnapshot`)
 * and snapshots synthesised from the archive (snapshot-synthesiser.ts). Part names and bytes
 * are a function of the id and the rows, so two writers of the same snapshot write the same
 * objects; the manifest is created only if absent, and last.
 *
 * Overlapped with the rows coming in, so a base snapshot goes at the speed of its slowest stage
 * rather than the sum of them: each block of BLOCK_RECORDS rows is compressed (on libuv's
 * pool) as soon as it is full, while the next rows are encoded, and a finished part is hashed
 * and stored while the next part fills. Memory stays bounded: one block compressing per open
 * part, one part being stored; `add` waits for the previous store before it hands on another.
 */
export class SnapshotPartsWriter {
  readonly tables: Record<string, SnapshotTable> = {};
  private readonly open = new Map<string, OpenPart>();
  /** The part being stored in the background (at most one); its failure surfaces at the next add or at finish. */
  private storing: Promise<void> = Promise.resolve();
  /** Parts handed to the background store and not yet recorded in `tables` (0 or 1 per table): they number the next part. */
  private readonly inFlight = new Map<string, number>();

  constructor(
    private readonly store: ObjectStore,
    private readonly source: string,
    readonly id: string,
    private readonly schemas: SchemaSource,
    private readonly signal?: AbortSignal,
    /** Authenticates the manifest (archive MACs); absent only in tests of the format. */
    private readonly signer?: ArchiveSigner,
    /**
     * A table-scoped base (`chartlog resync`): written under table-snapshots/ with
     * `scope: "tables"`, apart from the source's bases and from every object `chartlog run` writes.
     */
    private readonly tableScoped = false,
  ) {}

  private get prefix(): string {
    return this.tableScoped ? tableSnapshotsPrefix(this.source) : snapshotsPrefix(this.source);
  }

  /** Records a table's current version, also for tables without rows. */
  noteTable(name: string, fingerprint: string): void {
    this.tables[name] ??= { fingerprint, rows: 0, parts: [] };
    this.tables[name].fingerprint = fingerprint;
  }

  /**
   * Adds one encoded row; writes a part when it is full. A block seal's rows (`blockStart` true on
   * its first, false on the others: MessageEncoder.encodeBaseSnapshot) go into one container
   * block, which their first row starts, and one part: a reader meets the seal before the rows
   * that refer to it, whichever block it reads or hands to a thread.
   */
  async add(m: { table: string; fingerprint: string; value: Uint8Array; blockStart?: boolean }): Promise<void> {
    this.tables[m.table] ??= { fingerprint: m.fingerprint, rows: 0, parts: [] };
    let p = this.open.get(m.table);
    if (p && m.blockStart === false && p.fingerprint !== m.fingerprint) throw new ChartlogError('internal', `${m.table}: a block seal's rows of two table versions`);
    if (p && m.blockStart !== false && (p.fingerprint !== m.fingerprint || p.bytes >= PART_BYTES)) {
      await this.writePart(p);
      p = undefined;
    }
    p ??= await this.openPart(m.table, m.fingerprint);
    if (m.blockStart === true && p.bodies.length > 0) await this.compressBlock(p);
    const body = recordBody(m.value);
    p.bodies.push(body);
    p.rows++;
    p.bytes += body.byteLength;
    this.tables[m.table]!.rows++;
    if (p.bodies.length >= BLOCK_RECORDS) await this.compressBlock(p);
  }

  /** Writes a table's last open part now, when no more of its rows will come. */
  async closeTable(name: string): Promise<void> {
    const p = this.open.get(name);
    if (p) await this.writePart(p);
    await this.storing;
  }

  /**
   * Writes the last parts, checks every part is in the store (another process's clean-up of
   * "interrupted" snapshots must not leave a manifest naming missing parts), then creates the
   * manifest. When it already exists (the same snapshot written before), that one is returned.
   */
  async finish(m: { position: Position; commitTsUs: bigint; origin: SnapshotManifest['origin'] }): Promise<SnapshotManifest> {
    for (const p of [...this.open.values()]) await this.writePart(p);
    await this.storing;
    for (const t of Object.values(this.tables)) {
      for (const part of t.parts) {
        if (!(await this.store.head(part.key))) {
          throw new ChartlogError('storage', `${part.key} disappeared before its snapshot manifest was written`, {
            retriable: true,
            hint: 'another process removed it as an interrupted snapshot; write the snapshot again',
          });
        }
      }
    }
    const manifest: SnapshotManifest = {
      version: 1,
      source: this.source,
      id: this.id,
      position: Position.format(m.position),
      commitTsUs: m.commitTsUs.toString(),
      takenAt: new Date().toISOString(),
      origin: m.origin,
      ...(this.tableScoped ? { scope: 'tables' as const } : {}),
      tables: this.tables,
    };
    const key = this.tableScoped ? tableSnapshotManifestKey(this.source, this.id) : snapshotManifestKey(this.source, this.id);
    const stored = this.signer ? await this.signer.sign(key, manifest) : manifest;
    const created = await withRetry(() => this.store.putIfAbsent(key, Buffer.from(`${JSON.stringify(stored, null, 2)}\n`), { retain: true }), { signal: this.signal });
    if (!created) return JSON.parse(Buffer.from(await this.store.get(key)).toString('utf8')) as SnapshotManifest;
    return manifest;
  }

  private async openPart(table: string, fingerprint: string): Promise<OpenPart> {
    const t = this.tables[table]!;
    // Numbered when opened: the previous part of the table is already closed, in order.
    const key = `${this.prefix}${this.id}/${table}/part-${String(t.parts.length + this.pendingParts(table)).padStart(5, '0')}.avro`;
    const container = new AvroContainerWriter(await this.schemas.schemaJson(this.source, fingerprint), {
      sync: createHash('sha256').update(key).digest().subarray(0, 16),
      metadata: { 'chartlog.table': table, 'chartlog.fingerprint': fingerprint, 'chartlog.snapshot': this.id },
    });
    const p: OpenPart = { table, fingerprint, key, rows: 0, bodies: [], bytes: 0, container, compressing: Promise.resolve() };
    this.open.set(table, p);
    return p;
  }

  private pendingParts(table: string): number {
    return this.inFlight.get(table) ?? 0;
  }

  /**
   * Starts compressing the rows collected so far as the part's next block (compressed off the
   * event loop). Waits for the block before it, so one block per part is compressing at a time
   * while the caller goes on encoding the next rows.
   */
  private async compressBlock(p: OpenPart): Promise<void> {
    const bodies = p.bodies;
    p.bodies = [];
    await p.compressing;
    p.compressing = p.container.addBlock(bodies);
    p.compressing.catch(() => undefined); // awaited at the next block or when the part is written
  }

  /**
   * Closes the part: its last block compressed, then hashed and stored in the background while
   * the caller goes on; the part before it (of any table) must be stored first, so at most one
   * part is held for storing. Recorded in `tables` once stored, in order.
   */
  private async writePart(p: OpenPart): Promise<void> {
    this.open.delete(p.table);
    if (p.rows === 0) return;
    await this.compressBlock(p);
    await p.compressing;
    await this.storing;
    const t = this.tables[p.table]!;
    this.inFlight.set(p.table, this.pendingParts(p.table) + 1);
    const store = async () => {
      const body = p.container.toBuffer();
      await withRetry(() => this.store.put(p.key, body, { retain: true }), { signal: this.signal });
      t.parts.push({ key: p.key, fingerprint: p.fingerprint, sha256: sha256Hex(body), bytes: body.length, rows: p.rows });
      this.inFlight.set(p.table, this.pendingParts(p.table) - 1);
    };
    this.storing = store();
    this.storing.catch(() => undefined); // awaited before the next part is stored, and by finish
  }
}

/**
 * Writes a connector's consistent snapshot to the store (SnapshotPartsWriter), then the
 * manifest with every part's sha256 and row count. Parts of earlier attempts that never got a
 * manifest are removed — only once the connector has yielded its first batch, so a connector
 * that refuses to start (e.g. its slot is in use) leaves the store untouched — and only under
 * the writer lease (`fence`); without one they are left for the process that holds it.
 */
export async function writeSnapshot(options: {
  store: ObjectStore;
  source: string;
  batches: AsyncIterable<ChangeBatch>;
  encoder: BatchEncoder;
  schemas: SchemaSource;
  signal?: AbortSignal;
  fence?: WriterFence;
  signer?: ArchiveSigner;
}): Promise<SnapshotManifest> {
  const { store, source, encoder, schemas, signal } = options;
  let position: Position | null = null;
  let commitTsUs = 0n;
  let writer: SnapshotPartsWriter | null = null;
  // One chunk is encoded (its PHI sealed on the crypto thread) while the previous one is written.
  let encoding: Promise<(BusMessage & { blockStart?: boolean })[]> | null = null;
  // The snapshot's block seals numbered per table in row order (readers check it: docs/formats.md).
  const ordinals = new BlockOrdinals();

  for await (const batch of options.batches) {
    if (!batch.snapshot) throw new ChartlogError('internal', 'a snapshot yielded a non-snapshot batch');
    if (!writer || !position) {
      if (options.fence) await removeIncompleteSnapshots(store, source, options.fence);
      position = batch.position;
      commitTsUs = batch.commitTsUs;
      writer = new SnapshotPartsWriter(store, source, Position.format(batch.position), schemas, signal, options.signer);
    } else if (!Position.equals(position, batch.position)) {
      throw new ChartlogError('internal', 'snapshot batches must share one consistent position');
    }
    for (const s of batch.schemaChanges ?? []) writer.noteTable(qualifiedName(s), await encoder.fingerprintOf(source, s));
    const next = encoder.encodeBase ? encoder.encodeBase(batch, ordinals) : encoder.encode(batch);
    next.catch(() => undefined); // awaited after the previous chunk is written
    if (encoding) for (const m of await encoding) await writer.add(m);
    encoding = next;
  }
  if (!writer || !position) throw new ChartlogError('internal', 'the snapshot produced no consistent position');
  if (encoding) for (const m of await encoding) await writer.add(m);
  const manifest = await writer.finish({ position, commitTsUs, origin: 'source' });
  const rows = Object.values(manifest.tables).reduce((n, t) => n + t.rows, 0);
  logger().info({ source, snapshot: manifest.id, tables: Object.keys(manifest.tables).length, rows }, 'snapshot written');
  return manifest;
}

/**
 * An attempt touched this recently may still be being written by another process (a synthesis
 * inside `chartlog run` beside a `chartlog snapshot`): it is left for a later clean-up.
 */
const INCOMPLETE_GRACE_MS = 15 * 60_000;

/**
 * Removes snapshot attempts that never got a manifest and have not been written to lately.
 * Deleting is shared state: the writer lease is checked in the store first, and by this
 * process's clock before each delete.
 */
export async function removeIncompleteSnapshots(store: ObjectStore, source: string, fence: WriterFence, nowMs = Date.now()): Promise<void> {
  const byId = new Map<string, { keys: string[]; newest: number }>();
  for await (const o of store.listAll(snapshotsPrefix(source))) {
    const id = o.key.slice(snapshotsPrefix(source).length).split('/')[0]!;
    const e = byId.get(id) ?? { keys: [], newest: 0 };
    e.keys.push(o.key);
    e.newest = Math.max(e.newest, o.lastModified.getTime());
    byId.set(id, e);
  }
  let checked = false;
  for (const [id, { keys, newest }] of byId) {
    if (keys.some((k) => k.endsWith('/manifest.json')) || nowMs - newest < INCOMPLETE_GRACE_MS) continue;
    if (!checked) {
      await fence.check();
      checked = true;
    }
    logger().warn({ source, snapshot: id, objects: keys.length }, 'removing an interrupted snapshot');
    for (const k of keys) {
      fence.assertHeld();
      await store.delete(k);
    }
  }
}
