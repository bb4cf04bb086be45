import type { Config } from '../../src/config/schema.js';
import type { Position } from '../../src/core/position.js';
import type { CellValue, Row } from '../../src/core/table-schema.js';
import { openArchiveCodec } from '../../src/archive/archive-codec.js';
import { compileTable } from '../../src/codec/compiled-table.js';
import { PhiOpener } from '../../src/phi/phi-opener.js';
import type { ObjectStore } from '../../src/storage/object-store.js';

/**
 * Opens the sealed bytes a `--phi sealed` replica holds, with the archive's keyring, as someone
 * holding that keyring would: the table's stored schema gives the AAD's place (source, table,
 * sealed columns), the row's plain key columns the rest. A row seal opens only in its own row and
 * columns; a stale seal of the same row (an older value) opens too, so callers compare the values
 * with the source's. `rows`: the replica's rows with the key columns as the archive holds them
 * and the sealed columns as bytes; opened in place and returned. `position`: the replica's
 * position (no seal in it can be later).
 */
export async function openReplicaSealed(
  config: Readonly<Config>,
  store: ObjectStore,
  source: { name: string; type: string },
  table: { schema: string; table: string },
  rows: Record<string, CellValue>[],
  position: Position,
): Promise<Row[]> {
  const archive = openArchiveCodec(config, source, store, true);
  // Any stored version of the table with PHI: a row seal's place names the table and its sealed columns.
  let newest = null;
  for (const fp of await archive.schemas.listFingerprints()) {
    const r = await archive.schemas.resolve(fp);
    if (r.version.table.schema === table.schema && r.version.table.table === table.table && r.version.sealed.size > 0) newest = r;
  }
  if (!newest) throw new Error(`no stored schema of ${table.schema}.${table.table} with sealed columns`);
  const compiled = compileTable(source.name, newest);
  const opener = new PhiOpener({ source: source.name, keys: archive.keys! });
  for (const row of rows) await opener.open(compiled, null, row, position, false);
  return rows;
}
