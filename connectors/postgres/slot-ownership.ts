import { createHash } from 'node:crypto';
import { configError, type ChartlogError } from '../../src/core/errors.js';
import type { ArchiveClaim } from '../../src/core/source-connector.js';

/**
 * Which replication slot an archive may use (docs/architecture.md §1, "Slot ownership"). Pure.
 *
 * The owner is recorded in the slot's name: an archive's slot is `<base>_<archive id>`, with
 * `<base>` the configured `postgres.slotName` or `chartlog_<source>`. PostgreSQL keeps no
 * other text with a slot, and a name needs no table in the source database, no privilege
 * beyond REPLICATION, and cannot drift apart from the slot it describes. Slot names have at
 * most 63 characters of [a-z0-9_]: the base keeps 46, the id takes 17 (`_` + 16 hex).
 *
 * Rules, for the slots of this database whose name is the base or the base plus an id:
 * - this archive's own slot exists: it is used (other archives' slots are left alone);
 * - a slot named exactly the base exists (a *legacy* slot, created before owners were
 *   recorded): adopted when the store holds a checkpoint of the source (the archive that
 *   streamed from it), refused otherwise — it may be another archive's, and taking it would
 *   silently move the stream away from that one;
 * - another archive's slot (`<base>_<other id>`) exists: refused;
 * - with `takeOver` (`--take-over-slot`), refused slots are dropped and this archive's own is
 *   created instead (an adoptable legacy slot is still adopted: it is this archive's, and
 *   dropping it would lose what it holds).
 */

export interface SlotRow {
  readonly name: string;
  readonly active: boolean;
}

export type SlotPlan =
  | {
      readonly kind: 'use';
      /** The slot to stream from, or to create (`exists` false). */
      readonly slot: string;
      readonly exists: boolean;
      /** Slots of another archive (or legacy ones) to drop first: only with takeOver. */
      readonly drop: readonly string[];
      /** Slots of other archives left alone (they hold WAL for them). */
      readonly others: readonly string[];
      readonly adoptedLegacy: boolean;
    }
  | { readonly kind: 'refuse'; readonly error: ChartlogError };

/** The most characters a base keeps: 63 less `_` and 16 hex digits. */
export const MAX_SLOT_BASE = 46;

/** The base of slot names: the configured name, or `chartlog_<source>`, cut with a hash when too long. */
export function slotBase(legacyName: string): string {
  if (legacyName.length <= MAX_SLOT_BASE) return legacyName;
  const hash = createHash('sha256').update(legacyName).digest('hex').slice(0, 8);
  return `${legacyName.slice(0, MAX_SLOT_BASE - 9)}_${hash}`;
}

export function ownSlotName(base: string, archiveId: string): string {
  return `${base}_${archiveId}`;
}

/** The archive id a slot name of this base records, or null (not a slot of this base, or legacy). */
export function slotOwner(base: string, slot: string): string | null {
  if (!slot.startsWith(`${base}_`)) return null;
  const rest = slot.slice(base.length + 1);
  return /^[0-9a-f]{16}$/.test(rest) ? rest : null;
}

export function planSlot(input: {
  readonly source: string;
  /** The name slots had before owners were recorded (configured, or `chartlog_<source>`). */
  readonly legacyName: string;
  readonly base: string;
  readonly claim: ArchiveClaim;
  /** Logical slots of this database. */
  readonly slots: readonly SlotRow[];
}): SlotPlan {
  const { source, legacyName, base, claim, slots } = input;
  const own = ownSlotName(base, claim.archiveId);
  const legacy = slots.find((s) => s.name === legacyName);
  const foreign = slots.filter((s) => s.name !== own && slotOwner(base, s.name) !== null);
  if (slots.some((s) => s.name === own)) {
    return { kind: 'use', slot: own, exists: true, drop: [], others: [...foreign.map((s) => s.name), ...(legacy ? [legacy.name] : [])], adoptedLegacy: false };
  }
  if (legacy && claim.adoptLegacy) {
    return { kind: 'use', slot: legacy.name, exists: true, drop: [], others: foreign.map((s) => s.name), adoptedLegacy: true };
  }
  const blocking = [...(legacy ? [legacy] : []), ...foreign];
  if (blocking.length > 0 && !claim.takeOver) {
    const first = blocking[0]!;
    const owner = slotOwner(base, first.name);
    const whose = owner
      ? `belongs to archive ${owner}`
      : `records no owning archive (it was created before chartlog recorded owners) and this store has no checkpoint of source ${source}, so it may be another archive's`;
    return {
      kind: 'refuse',
      error: configError(
        `source ${source}: replication slot ${first.name} ${whose}; this archive is ${claim.archiveId}. ` +
          `Dropping or reusing it would move the stream away from the archive it serves, which would then miss transactions without a gap it could see. Nothing was written` +
          (blocking.length > 1 ? ` (also: ${blocking.slice(1).map((s) => s.name).join(', ')})` : ''),
        `each archive needs a slot of its own: if this configuration is a copy, give the source another name or set sources[].postgres.slotName to a base of its own; ` +
          `if archive ${owner ?? 'that used it'} is abandoned, run again with --take-over-slot (chartlog run --take-over-slot, or chartlog snapshot --from-source --take-over-slot): it drops ${first.name}` +
          (first.active ? ` (it is in use now: stop the process that streams from it first)` : ''),
      ),
    };
  }
  return { kind: 'use', slot: own, exists: false, drop: blocking.map((s) => s.name), others: [], adoptedLegacy: false };
}
