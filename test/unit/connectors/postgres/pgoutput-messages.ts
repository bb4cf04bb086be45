/** Builds pgoutput protocol v1 messages byte by byte, as the server sends them (test helper). */
export class MessageWriter {
  private readonly bytes: number[] = [];
  u8(v: number): this {
    this.bytes.push(v & 0xff);
    return this;
  }
  i16(v: number): this {
    return this.u8(v >> 8).u8(v);
  }
  i32(v: number): this {
    return this.u8(v >>> 24).u8(v >>> 16).u8(v >>> 8).u8(v);
  }
  u64(v: bigint): this {
    return this.i32(Number((v >> 32n) & 0xffffffffn)).i32(Number(v & 0xffffffffn));
  }
  cstr(s: string): this {
    for (const b of Buffer.from(s, 'utf8')) this.u8(b);
    return this.u8(0);
  }
  tuple(values: readonly (string | null | 'UNCHANGED-TOAST')[]): this {
    this.i16(values.length);
    for (const v of values) {
      if (v === null) this.u8(0x6e);
      else if (v === 'UNCHANGED-TOAST') this.u8(0x75);
      else {
        const b = Buffer.from(v, 'utf8');
        this.u8(0x74).i32(b.length);
        for (const x of b) this.u8(x);
      }
    }
    return this;
  }
  done(): Uint8Array {
    return Uint8Array.from(this.bytes);
  }
}

const PG_EPOCH_US = 946_684_800_000_000n;
const w = () => new MessageWriter();

export const msg = {
  begin: (finalLsn: bigint, commitUnixUs: bigint, xid: number) =>
    w().u8(0x42).u64(finalLsn).u64(commitUnixUs - PG_EPOCH_US).i32(xid).done(),
  commit: (commitLsn: bigint, endLsn: bigint, commitUnixUs: bigint) =>
    w().u8(0x43).u8(0).u64(commitLsn).u64(endLsn).u64(commitUnixUs - PG_EPOCH_US).done(),
  relation: (oid: number, schema: string, table: string, identity: 'd' | 'f' | 'i' | 'n', cols: [flags: number, name: string, typeOid: number, typeMod: number][]) => {
    const m = w().u8(0x52).i32(oid).cstr(schema).cstr(table).u8(identity.charCodeAt(0)).i16(cols.length);
    for (const [flags, name, typeOid, typeMod] of cols) m.u8(flags).cstr(name).i32(typeOid).i32(typeMod);
    return m.done();
  },
  insert: (oid: number, values: (string | null)[]) => w().u8(0x49).i32(oid).u8(0x4e).tuple(values).done(),
  update: (oid: number, old: { kind: 'K' | 'O'; values: (string | null)[] } | null, values: (string | null | 'UNCHANGED-TOAST')[]) => {
    const m = w().u8(0x55).i32(oid);
    if (old) m.u8(old.kind.charCodeAt(0)).tuple(old.values);
    return m.u8(0x4e).tuple(values).done();
  },
  delete: (oid: number, kind: 'K' | 'O', values: (string | null)[]) => w().u8(0x44).i32(oid).u8(kind.charCodeAt(0)).tuple(values).done(),
  truncate: (oids: number[], flags: number) => {
    const m = w().u8(0x54).i32(oids.length).u8(flags);
    for (const o of oids) m.i32(o);
    return m.done();
  },
};
