import { usageError } from '../core/errors.js';
import type { Row } from '../core/table-schema.js';
import { eachBatch, type RestoreTarget, type RowSource, type TablePlan } from '../restore/targets/restore-target.js';

/**
 * The initial load of a `--phi omit` replica: restore runs with PHI kept sealed (no keyring, no
 * opening), and this wrapper hands the real target every PHI column as NULL, in the column's own
 * type made nullable, so no sealed byte and no plaintext reaches the replica.
 */
export class OmitPhiTarget implements RestoreTarget {
  readonly description: string;
  readonly rowOrder: 'key' | 'any' | undefined;

  constructor(private readonly inner: RestoreTarget) {
    this.description = inner.description;
    this.rowOrder = inner.rowOrder;
  }

  check(tables: readonly { schema: string; table: string }[]): Promise<void> {
    return this.inner.check(tables);
  }

  prepare(plans: readonly TablePlan[]): Promise<void> {
    return this.inner.prepare(plans.map(omitted));
  }

  writeTable(plan: TablePlan, rows: RowSource, progress: (rows: number, bytes?: number) => void): Promise<number> {
    const phi = [...plan.sealed];
    async function* withoutPhi(): AsyncGenerator<Row[]> {
      for await (const batch of eachBatch(rows)) {
        yield batch.map((row) => {
          const out: Record<string, Row[string]> = { ...row };
          for (const c of phi) out[c] = null;
          return out;
        });
      }
    }
    return this.inner.writeTable(omitted(plan), withoutPhi(), progress);
  }

  finish(meta: Record<string, unknown>): Promise<void> {
    return this.inner.finish(meta);
  }

  abort(): Promise<void> {
    return this.inner.abort();
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}

/** The plan with its PHI (sealed) columns as plain nullable columns that will hold NULL. */
function omitted(plan: TablePlan): TablePlan {
  if (plan.sealed.size === 0) return plan;
  const key = plan.table.primaryKey.filter((k) => plan.sealed.has(k));
  if (key.length > 0) {
    throw usageError(`--phi omit: ${plan.name} has PHI in its primary key (${key.join(', ')}), which cannot be left NULL`, `replicate it with --phi open, or leave it out with --tables`);
  }
  return {
    ...plan,
    sealed: new Set(),
    table: { ...plan.table, columns: plan.table.columns.map((c) => (plan.sealed.has(c.name) ? { ...c, nullable: true } : c)) },
  };
}
