import avro from 'avsc';
import { qualifiedName, type TableSchema } from '../core/table-schema.js';
import { placeAad } from '../phi/aad.js';
import type { ColumnPolicy } from '../phi/column-policy.js';
import type { SealedColumn, SealedTable } from '../phi/phi-opener.js';
import { RowPlaces } from '../phi/row-seal.js';
import { BlockPlaces } from '../phi/block-seal.js';
import { toAvroSchema } from './avro-schema.js';
import { bigintTypeHook } from './bigint-long.js';
import type { RegisteredSchema, SchemaStore } from './schema-store.js';
import { singleObjectHeader } from './single-object.js';
import { mappingFor, SEALED, type ValueMapping } from './value-mapping.js';

/**
 * A table version compiled once for the codec's writers and readers: per column its Avro field,
 * value mapping and, for sealed columns, the AAD's place half, so that nothing per event is
 * looked up by name or rebuilt.
 */

export interface CompiledColumn extends SealedColumn {
  readonly field: string;
  readonly mapping: ValueMapping;
  readonly sealed: boolean;
  /** Union index of the marker (UNCHANGED, ABSENT) in the column's union: after null and the value branches. */
  readonly markerIndex: number;
}

/** A table version ready to encode and decode. */
export interface CompiledTable extends SealedTable {
  readonly registered: RegisteredSchema;
  readonly type: avro.Type;
  readonly valueBranch: string;
  readonly table: TableSchema;
  readonly columns: readonly CompiledColumn[];
  readonly byName: ReadonlyMap<string, CompiledColumn>;
  /** The sealed columns, compiled, in column order. */
  readonly sealed: readonly CompiledColumn[];
  readonly header: Uint8Array;
  /**
   * True when the stored schema is exactly the one toAvroSchema makes for this version, so
   * messages are written and read by avro-binary.ts directly; otherwise (a schema from another
   * codec version) by avsc from the stored schema.
   */
  readonly direct: boolean;
}

/**
 * Compiles a stored schema. `original` is the TableSchema the connector gave (events keep
 * their own object); absent, the version the stored schema describes. `source` is the codec's
 * source, bound into the AAD of sealed columns.
 */
export function compileTable(source: string, registered: RegisteredSchema, original?: TableSchema): CompiledTable {
  const { version } = registered;
  const table = original ?? version.table;
  const columns = version.attribute.columns.map((c): CompiledColumn => {
    const mapping = c.sealed ? SEALED : mappingFor(c.type, c.sourceType, c.field);
    return {
      name: c.name,
      field: c.field,
      mapping,
      sealed: c.sealed,
      sealedKey: c.sealed && table.primaryKey.includes(c.name),
      place: c.sealed ? placeAad(source, table.schema, table.table, c.name) : new Uint8Array(0),
      where: `${source} ${qualifiedName(table)}.${c.name}`,
      markerIndex: 1 + mapping.branches.length,
    };
  });
  const sealed = columns.filter((c) => c.sealed);
  const byName = new Map(columns.map((c) => [c.name, c]));
  const type = avro.Type.forSchema(registered.schema as avro.Schema, { wrapUnions: true, typeHook: bigintTypeHook as never });
  return {
    name: qualifiedName(table),
    where: `${source} ${qualifiedName(table)}`,
    registered,
    type,
    valueBranch: `${String(registered.schema.namespace)}.Value`,
    table,
    columns,
    byName,
    sealedColumns: sealed.map((c) => c.name),
    sealed,
    rowPlaces: new RowPlaces(source, table.schema, table.table, sealed.map((c) => c.name)),
    blockPlaces: new BlockPlaces(source, table.schema, table.table, registered.fingerprintHex, sealed.map((c) => c.name)),
    needsPlainKeyAad: sealed.some((c) => c.sealedKey),
    needsFullKeyAad: sealed.some((c) => !c.sealedKey),
    key: table.primaryKey.map((name) => ({ name, sealed: byName.get(name)?.sealed ?? false })),
    header: singleObjectHeader(registered.fingerprint),
    direct: fitsDirect(registered),
  };
}

/**
 * The table versions one codec has compiled, by TableSchema (what the writers get) and by
 * fingerprint (what the readers get). The `ready…` lookups take no promise: the hot paths use
 * them and wait only for a version not compiled yet.
 */
export class CompiledTables {
  private readonly byTable = new WeakMap<TableSchema, Promise<CompiledTable>>();
  private readonly byFingerprint = new Map<bigint, CompiledTable>();
  /** Table versions already compiled, looked up without a promise per event. */
  private readonly compiled = new WeakMap<TableSchema, CompiledTable>();

  constructor(
    private readonly source: string,
    private readonly schemas: SchemaStore,
    /** Which columns to seal; absent: none. */
    private readonly policy: ColumnPolicy | undefined,
  ) {}

  ready(table: TableSchema): CompiledTable | undefined {
    return this.compiled.get(table);
  }

  readyFor(fingerprint: bigint): CompiledTable | undefined {
    return this.byFingerprint.get(fingerprint);
  }

  /**
   * A table version as the connector gave it: checked against the PHI policy (strict tables
   * fail closed with 'phi_policy'), its schema stored before it is used.
   */
  async compile(table: TableSchema): Promise<CompiledTable> {
    const ready = this.compiled.get(table);
    if (ready) return ready;
    let p = this.byTable.get(table);
    if (!p) {
      p = (async () => {
        const sealed = this.policy ? this.policy.sealedColumns(table) : new Set<string>();
        const registered = await this.schemas.register(toAvroSchema(this.source, table, sealed));
        const known = this.byFingerprint.get(registered.fingerprint);
        if (known) {
          this.compiled.set(table, known);
          return known;
        }
        const compiled = compileTable(this.source, registered, table);
        this.byFingerprint.set(registered.fingerprint, compiled);
        this.compiled.set(table, compiled);
        return compiled;
      })();
      this.byTable.set(table, p);
      p.catch(() => this.byTable.delete(table));
    }
    return p;
  }

  /** The table version a stored schema describes, as it was written (its own sealed columns). */
  async compiledFor(fingerprint: bigint): Promise<CompiledTable> {
    let compiled = this.byFingerprint.get(fingerprint);
    if (!compiled) {
      compiled = compileTable(this.source, await this.schemas.resolve(fingerprint));
      this.byFingerprint.set(fingerprint, compiled);
    }
    return compiled;
  }
}

/**
 * True when the stored schema's fields are exactly those toAvroSchema makes for the version it
 * describes: then the direct writer and reader, which follow toAvroSchema, match it byte for byte.
 */
function fitsDirect(registered: RegisteredSchema): boolean {
  try {
    const v = registered.version;
    return JSON.stringify(toAvroSchema(v.source, v.table, v.sealed).fields) === JSON.stringify(registered.schema.fields);
  } catch {
    return false;
  }
}
