import { ChartlogError } from '../core/errors.js';
import type { ObjectInfo, ObjectStore } from '../storage/object-store.js';

/** What every write-once record of a table holds: the format, the table, and the position it starts at (the object's name). */
export interface TableRecord {
  format: 1;
  table: string;
  from: string;
}

/**
 * Immutable JSON records of tables under one folder of a source (docs/formats.md: "Table
 * starts", "Unproven windows"): one object per record,
 *
 *   <source>/<folder>/<schema.table>/<from position>.json
 *
 * holding the record as one line of JSON. Written once with putIfAbsent (idempotent: the name is
 * a function of table and position, and a record is never rewritten); read back whole, and an
 * unreadable record stops the reader (integrity) rather than be skipped: restore would answer
 * wrongly without it.
 */
export class WriteOnceRecords<R extends TableRecord> {
  constructor(
    private readonly folder: string,
    /** Names the record in errors: "unreadable <what> record", "not <a what> record". */
    private readonly what: { name: string; article: 'a' | 'an'; hint: string },
  ) {}

  prefix(source: string): string {
    return `${source}/${this.folder}/`;
  }

  key(source: string, table: string, from: string): string {
    return `${this.prefix(source)}${table}/${from}.json`;
  }

  /** `from` names the object: the record's own unless the caller normalises it. */
  async write(store: ObjectStore, source: string, r: R, from = r.from): Promise<void> {
    await store.putIfAbsent(this.key(source, r.table, from), Buffer.from(`${JSON.stringify(r)}\n`), { contentType: 'application/json' });
  }

  /** Every record of the source, each checked and made into a T by `take` (which throws on a bad field), in listing order. */
  async readAll<T>(store: ObjectStore, source: string, take: (r: R) => T, read: (o: ObjectInfo) => Promise<Uint8Array> = (o) => store.get(o.key)): Promise<T[]> {
    const out: T[] = [];
    for await (const o of store.listAll(this.prefix(source))) {
      if (!o.key.endsWith('.json')) continue;
      let item: T;
      try {
        const r = JSON.parse(Buffer.from(await read(o)).toString('utf8')) as R;
        if (r.format !== 1 || typeof r.table !== 'string') throw new Error(`not ${this.what.article} ${this.what.name} record (format 1)`);
        item = take(r);
      } catch (err) {
        throw new ChartlogError('integrity', `unreadable ${this.what.name} record ${o.key}: ${(err as Error).message}`, { hint: this.what.hint });
      }
      out.push(item);
    }
    return out;
  }
}
