import { ChartlogError } from '../core/errors.js';
import type { Row } from '../core/table-schema.js';
import { isBlockReference } from './block-seal.js';
import { isRowSealReference } from './row-seal.js';
import { isSealedUnder, sealedKeyId, type DataKey } from './sealer.js';

/** Where unwrapped data keys come from: the KeyManager, or (on a restore thread) the thread that holds it. */
export interface DataKeySource {
  get(keyIdHex: string): Promise<DataKey>;
}

/**
 * The data keys unwrapped for opening, kept in memory so that opening a value that names one
 * needs no promise: only a value naming a key not seen yet waits for the keyring.
 */
export class OpeningKeys {
  private readonly byId = new Map<string, DataKey>();
  /** The data key that opened the last value: consecutive values usually share it. */
  private last: DataKey | undefined;

  constructor(private readonly keys: DataKeySource) {}

  /** The unwrapped data key a sealed value names, if in memory; the last one used is checked first, without hex. */
  of(sealed: Uint8Array): DataKey | undefined {
    const last = this.last;
    if (last && isSealedUnder(sealed, last.id)) return last;
    const id = sealedKeyId(sealed);
    const key = id === null ? undefined : this.byId.get(id);
    if (key) this.last = key;
    return key;
  }

  /** True when a sealed value of the row (in `columns`) names a data key not unwrapped yet. */
  lacks(columns: readonly { readonly name: string }[], row: Row | null): boolean {
    if (!row) return false;
    for (const c of columns) {
      const v = row[c.name];
      // A reference names no key: its row seal, in another column, or its block seal (PhiOpener's blocks), does.
      if (v instanceof Uint8Array && !isRowSealReference(v) && !isBlockReference(v) && !this.of(v)) return true;
    }
    return false;
  }

  /** Unwraps every data key the row's sealed values name that is not in memory yet. */
  async load(table: string, columns: readonly { readonly name: string }[], row: Row | null): Promise<void> {
    if (!row) return;
    for (const c of columns) {
      const v = row[c.name];
      if (!(v instanceof Uint8Array) || isRowSealReference(v) || isBlockReference(v) || this.of(v)) continue;
      const id = sealedKeyId(v);
      if (id === null) {
        throw new ChartlogError('integrity', `${table}.${c.name}: not a sealed value`, { hint: 'the object is damaged; run `chartlog verify`' });
      }
      this.byId.set(id, await this.keys.get(id));
    }
  }

  /** Unwraps the data key one sealed value (a block seal) names, if not in memory yet. */
  async loadOne(sealed: Uint8Array): Promise<void> {
    const id = sealedKeyId(sealed);
    if (id !== null && !this.of(sealed)) this.byId.set(id, await this.keys.get(id));
  }
}
