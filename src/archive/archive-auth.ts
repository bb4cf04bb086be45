import { ChartlogError } from '../core/errors.js';
import { Position } from '../core/position.js';
import type { ObjectStore } from '../storage/object-store.js';
import { ArchiveMac, ArchiveSigner, MAC_FIELD, sha256OfBytes, type MacAdoption, type MacCheck } from '../phi/archive-mac.js';
import type { Keyring } from '../phi/keyring/keyring.js';
import type { ArchiveIndex } from './archive-index.js';
import { checkpointKey, TRANSACTIONS_TABLE } from './layout.js';
import { newestManifestHead } from './manifest.js';
import { snapshotsPrefix, tableSnapshotsPrefix } from './snapshot-manifest.js';

/**
 * Archive MACs as the archive format uses them (src/phi/archive-mac.ts holds the key and the
 * HMAC): which objects must carry one, how objects written before MACs are accepted, and the
 * anchor that makes truncating the newest hours detectable. docs/formats.md has the rules;
 * `chartlog verify` reports what `authenticateArchive` finds and `chartlog restore` refuses it.
 */

export interface AuthProblem {
  object: string;
  /** mac: a MAC that fails, or is missing where one is required; truncated: the anchor or the checkpoint names more than the archive holds. */
  kind: 'mac' | 'truncated';
  message: string;
}

/** What the archive holds now, recorded in the MAC key when it is created (MacAdoption). */
export async function adoptionOf(store: ObjectStore, source: string): Promise<MacAdoption> {
  const objects: Record<string, string> = {};
  const record = async (key: string) => {
    try {
      objects[key] = sha256OfBytes(await store.get(key));
    } catch (err) {
      if (!(err instanceof ChartlogError && err.code === 'not_found')) throw err;
    }
  };
  await record(checkpointKey(source));
  for await (const o of store.listAll(snapshotsPrefix(source))) if (o.key.endsWith('/manifest.json')) await record(o.key);
  for await (const o of store.listAll(`${source}/schemas/`)) if (o.key.endsWith('.json')) await record(o.key);
  return { head: await newestManifestHead(store, source), objects };
}

/** The signer a writer of `source` uses: the MAC key, created with the archive's adoption on first use. */
export function archiveSigner(store: ObjectStore, keyring: Keyring, source: string): ArchiveSigner {
  return new ArchiveSigner(store, keyring, source, () => adoptionOf(store, source));
}

/**
 * The MAC key of the source's archive for readers (verify, restore, synthesis), or null when
 * the archive has none: written before archive MACs and not since. The keyring is opened only
 * when there is a key to unwrap.
 */
export async function loadArchiveMac(store: ObjectStore, source: string, keyring: () => Keyring): Promise<ArchiveMac | null> {
  if (!(await store.head(ArchiveMac.keyObjectKey(source)))) return null;
  return ArchiveMac.load(store, keyring(), source);
}

const macMessage = (c: MacCheck, what: string): string =>
  c === 'invalid' ? `${what}: its MAC does not match (altered, or written without the archive's key)` : `${what}: no MAC, and the archive's key did not adopt it (planted, or re-written without the key)`;

/**
 * Checks the index's JSON objects against the archive's MAC key. With `mac` null (an archive
 * without a key) only one thing is checked: that no object carries a MAC, since that means the
 * key object was removed.
 */
export function authenticateArchive(index: ArchiveIndex, mac: ArchiveMac | null): AuthProblem[] {
  const problems: AuthProblem[] = [];
  const cpKey = checkpointKey(index.source);
  if (!mac) {
    const signed = [
      ...index.hours.filter((h) => MAC_FIELD in h.manifest).map((h) => h.key),
      ...index.snapshotObjects.filter((s) => MAC_FIELD in s.manifest).map((s) => s.key),
      ...(index.tableSnapshotObjects ?? []).filter((s) => MAC_FIELD in s.manifest).map((s) => s.key),
      ...(index.checkpoint?.stored && MAC_FIELD in index.checkpoint.stored.object ? [cpKey] : []),
    ];
    for (const key of signed) {
      problems.push({ object: key, kind: 'mac', message: `carries a MAC but the archive's key ${ArchiveMac.keyObjectKey(index.source)} is missing` });
    }
    return problems;
  }
  const head = mac.adopted.head;
  for (const h of index.hours) {
    const c = mac.check(h.key, h.manifest as unknown as Record<string, unknown>, h.sha256);
    if (c === 'valid') continue;
    // Manifests older than the key hang off the adopted head by the sha256 chain (verify checks the chain).
    if (c === 'missing' && head && h.hour <= head.hour) continue;
    problems.push({ object: h.key, kind: 'mac', message: macMessage(c, `hour manifest ${h.hour}`) });
  }
  if (head) {
    const at = index.hours.find((h) => h.hour === head.hour);
    if (!at) problems.push({ object: ArchiveMac.keyObjectKey(index.source), kind: 'truncated', message: `the hour manifest ${head.hour} the archive's key adopted is missing` });
    else if (at.sha256 !== head.sha256) problems.push({ object: at.key, kind: 'mac', message: `hour manifest ${head.hour} differs from the one the archive's key adopted` });
  }
  for (const s of index.snapshotObjects) {
    const c = mac.check(s.key, s.manifest as unknown as Record<string, unknown>, s.sha256);
    if (c !== 'valid' && c !== 'adopted') problems.push({ object: s.key, kind: 'mac', message: macMessage(c, `snapshot manifest ${s.manifest.id}`) });
    else if (s.key !== `${snapshotsPrefix(index.source)}${s.manifest.id}/manifest.json`) {
      problems.push({ object: s.key, kind: 'mac', message: `names snapshot ${s.manifest.id}, not the folder it is in` });
    }
  }
  // Table-scoped bases came after archive MACs: only a valid MAC is accepted (none was adopted).
  for (const s of index.tableSnapshotObjects ?? []) {
    const c = mac.check(s.key, s.manifest as unknown as Record<string, unknown>, s.sha256);
    if (c !== 'valid' && c !== 'adopted') problems.push({ object: s.key, kind: 'mac', message: macMessage(c, `table snapshot manifest ${s.manifest.id}`) });
    else if (s.key !== `${tableSnapshotsPrefix(index.source)}${s.manifest.id}/manifest.json`) {
      problems.push({ object: s.key, kind: 'mac', message: `names table snapshot ${s.manifest.id}, not the folder it is in` });
    }
  }
  const cp = index.checkpoint;
  if (!cp) {
    if (index.hours.length > 0 || index.snapshots.length > 0) {
      problems.push({ object: cpKey, kind: 'truncated', message: 'the checkpoint is missing: nothing says how far the archive reaches' });
    }
    return problems;
  }
  const c = cp.stored ? mac.check(cpKey, cp.stored.object, cp.stored.sha256) : 'missing';
  if (c !== 'valid' && c !== 'adopted') {
    problems.push({ object: cpKey, kind: 'mac', message: macMessage(c, 'checkpoint') });
    return problems;
  }
  // The anchor: the newest closed hour when the checkpoint was written must still be there, unchanged.
  if (cp.head) {
    const at = index.hours.find((h) => h.hour === cp.head!.hour);
    if (!at) {
      problems.push({ object: `${index.source}/manifests/${cp.head.hour}.json`, kind: 'truncated', message: `the checkpoint anchors hour ${cp.head.hour}, whose manifest is missing (the newest hours were deleted?)` });
    } else if (at.sha256 !== cp.head.sha256) {
      problems.push({ object: at.key, kind: 'truncated', message: `the checkpoint anchors hour ${cp.head.hour} with another sha256 (the manifest was replaced)` });
    }
  }
  // The transaction chain's head: the archive must reach the checkpoint's position.
  const reach = reachOf(index);
  if (reach === null || Position.compare(reach, cp.position) < 0) {
    problems.push({
      object: cpKey,
      kind: 'truncated',
      message: `the checkpoint says the archive is durable up to ${Position.format(cp.position)}, but the newest transaction it holds is ${reach ? Position.format(reach) : 'none'} (objects were deleted)`,
    });
  }
  return problems;
}

/** The furthest position the archive's listed objects reach: manifests, transaction-log parts, snapshots. */
function reachOf(index: ArchiveIndex): Position | null {
  let reach: Position | null = null;
  const see = (p: Position) => {
    if (!reach || Position.compare(p, reach) > 0) reach = p;
  };
  for (const h of index.hours) if (h.manifest.lastPos) see(Position.parse(h.manifest.lastPos));
  for (const p of index.openParts) {
    if (p.sections) for (const s of p.sections) if (s.table === TRANSACTIONS_TABLE) see(s.last);
    if (!p.sections && p.table === TRANSACTIONS_TABLE) see(p.last);
  }
  for (const s of index.snapshots) see(Position.parse(s.position));
  return reach;
}

/** Refuses (exit 1, naming each object) an archive whose authentication found problems. */
export function refuseUnauthentic(source: string, problems: readonly AuthProblem[], action: string): void {
  if (problems.length === 0) return;
  const list = problems.map((p) => `${p.object}: ${p.message}`).join('; ');
  throw new ChartlogError('integrity', `the archive of ${source} fails authentication, refusing to ${action}: ${list}`, {
    hint: 'run `chartlog verify` to see every problem; restore the named objects from an intact copy of the archive (docs/operations.md, "Archive authentication")',
  });
}
