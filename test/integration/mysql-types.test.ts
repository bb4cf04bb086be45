import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { MysqlConnector } from '../../connectors/mysql/mysql-connector.js';
import type { ChangeBatch, ChangeEvent } from '../../src/core/change-event.js';
import { createLogger } from '../../src/core/logger.js';
import type { Row } from '../../src/core/table-schema.js';
import { requireEnv } from '../support/env.js';
import { type TestDatabase, createTestDatabase, takeUntil } from '../support/mariadb-instance.js';

// Every type of the issue with its edge values; each expected value is written out by hand in
// the value model of src/core/table-schema.ts, so snapshot and stream are checked against the
// truth, not only against each other.
// An odd process time zone (UTC+12:45/+13:45): DATETIME and TIMESTAMP values must not move with it.
process.env.TZ = 'Pacific/Chatham';

const DDL = `CREATE TABLE m (
  id INT PRIMARY KEY,
  ti TINYINT, tiu TINYINT UNSIGNED, si SMALLINT, siu SMALLINT UNSIGNED, mi MEDIUMINT, miu MEDIUMINT UNSIGNED,
  i INT, iu INT UNSIGNED, bi BIGINT, biu BIGINT UNSIGNED,
  d DECIMAL(65,30), d2 DECIMAL(10,2), f FLOAT, db DOUBLE,
  dt DATE, dtm DATETIME(6), dtm0 DATETIME, ts TIMESTAMP(6) NULL DEFAULT NULL, tm TIME(6), tm0 TIME, tm3 TIME(3), y YEAR,
  v VARCHAR(50), ch CHAR(5), tx TEXT, bn BINARY(4), vb VARBINARY(10), bl BLOB, bt BIT(10), b1 BIT(1), b64 BIT(64),
  e ENUM('a,b','it''s','x','back\\\\slash'), s SET('p','q''r','s'), j JSON, u UUID, ip4 INET4, ip6 INET6
) CHARACTER SET utf8mb4`;

const COLS = 'id,ti,tiu,si,siu,mi,miu,i,iu,bi,biu,d,d2,f,db,dt,dtm,dtm0,ts,tm,tm0,tm3,y,v,ch,tx,bn,vb,bl,bt,b1,b64,e,s,j,u,ip4,ip6';

const INSERTS = [
  `(1, 127, 255, 32767, 65535, 8388607, 16777215, 2147483647, 4294967295, 9223372036854775807, 18446744073709551615,
    '99999999999999999999999999999999999.999999999999999999999999999999', '12345678.91', 3.4028234e38, 1.7976931348623157e308,
    '9999-12-31', '9999-12-31 23:59:59.999999', '9999-12-31 23:59:59', '2038-01-19 03:14:07.999999', '838:59:59.000000', '838:59:59', '-838:59:58.999', 2155,
    'héllo 😀 “quotes” \\\\ ''', 'abc', 'tëxt 🎉\\n\\ttab', x'00010000', x'00ff00', x'deadbeef00', b'1010101010', b'1', x'ffffffffffffffff',
    'a,b', 'p,q''r,s', '{"big": 12345678901234567890123, "f": 1.10, "s": "😀"}', '123e4567-e89b-12d3-a456-426614174000', '255.255.255.255', 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff')`,
  `(2, -128, 0, -32768, 0, -8388608, 0, -2147483648, 0, -9223372036854775808, 0,
    '-99999999999999999999999999999999999.999999999999999999999999999999', '-0.01', 1.1754944e-38, -2.2250738585072014e-308,
    '1000-01-01', '1000-01-01 00:00:00.000001', '1000-01-01 00:00:00', '1970-01-01 00:00:01.000001', '-838:59:59.000000', '-838:59:59', '-00:00:00.001', 1901,
    '', '', '', x'', x'', x'', b'0', b'0', 0,
    'it''s', '', '[]', '00000000-0000-0000-0000-000000000000', '0.0.0.0', '::')`,
  `(3, 0, 0, 0, 0, 0, 0, 0, 0, 9007199254740993, 9007199254740993,
    '0.000000000000000000000000000001', '0.00', 0.1, 0.1,
    '0000-00-00', '0000-00-00 00:00:00.000000', '0000-00-00 00:00:00', '0000-00-00 00:00:00.000000', '-00:00:00.500000', '00:00:00', '-12:34:56.789', 0,
    'x', 'a b', 'x', x'ff', x'00', x'00', b'0000000001', b'1', x'8000000000000001',
    'back\\\\slash', 's', '{"a": [1, 2.5e300, null, true]}', 'ffffffff-ffff-ffff-ffff-ffffffffffff', '10.0.0.1', '::ffff:192.0.2.1')`,
  `(4, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
    NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)`,
  `(5, -1, 1, -1, 1, -1, 1, -1, 1, -9007199254740993, 9223372036854775808,
    '-0.000000000000000000000000000001', '99999999.99', -16777217, 1e-300,
    '2024-00-15', '2024-02-29 12:00:00.100000', '2024-02-29 00:00:00', '2024-02-29 23:59:59.000000', '24:00:00.000001', '-00:00:01', '100:00:00.000', 1999,
    'ÿ', 'ab   ', '', x'00000001', x'0000', x'00', b'1000000000', b'0', x'0000000000000001',
    '', 'p,s', '"string"', '01234567-89ab-4def-8123-456789abcdef', '192.0.2.10', '2001:db8::1')`,
];

const bytes = (hex: string): Uint8Array => new Uint8Array(Buffer.from(hex, 'hex'));
const NULL_ROW: Row = Object.fromEntries(COLS.split(',').map((c) => [c, null]));

const EXPECTED: Record<number, Row> = {
  1: {
    id: 1, ti: 127, tiu: 255, si: 32767, siu: 65535, mi: 8388607, miu: 16777215, i: 2147483647, iu: 4294967295,
    bi: 9223372036854775807n, biu: 18446744073709551615n,
    d: '99999999999999999999999999999999999.999999999999999999999999999999', d2: '12345678.91',
    f: 3.4028234663852886e38, db: 1.7976931348623157e308,
    dt: '9999-12-31', dtm: '9999-12-31 23:59:59.999999', dtm0: '9999-12-31 23:59:59', ts: '2038-01-19 03:14:07.999999+00',
    tm: '838:59:59.000000', tm0: '838:59:59', tm3: '-838:59:58.999', y: 2155,
    v: "héllo 😀 “quotes” \\ '", ch: 'abc', tx: 'tëxt 🎉\n\ttab', bn: bytes('00010000'), vb: bytes('00ff00'), bl: bytes('deadbeef00'),
    bt: '1010101010', b1: '1', b64: '1'.repeat(64),
    e: 'a,b', s: ['p', "q'r", 's'], j: '{"big": 12345678901234567890123, "f": 1.10, "s": "😀"}', u: '123e4567-e89b-12d3-a456-426614174000',
    ip4: '255.255.255.255', ip6: 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff',
  },
  2: {
    id: 2, ti: -128, tiu: 0, si: -32768, siu: 0, mi: -8388608, miu: 0, i: -2147483648, iu: 0,
    bi: -9223372036854775808n, biu: 0n,
    d: '-99999999999999999999999999999999999.999999999999999999999999999999', d2: '-0.01',
    f: 1.1754943508222875e-38, db: -2.2250738585072014e-308,
    dt: '1000-01-01', dtm: '1000-01-01 00:00:00.000001', dtm0: '1000-01-01 00:00:00', ts: '1970-01-01 00:00:01.000001+00',
    tm: '-838:59:59.000000', tm0: '-838:59:59', tm3: '-00:00:00.001', y: 1901,
    v: '', ch: '', tx: '', bn: bytes('00000000'), vb: bytes(''), bl: bytes(''), bt: '0000000000', b1: '0', b64: '0'.repeat(64),
    e: "it's", s: [], j: '[]', u: '00000000-0000-0000-0000-000000000000', ip4: '0.0.0.0', ip6: '::',
  },
  3: {
    id: 3, ti: 0, tiu: 0, si: 0, siu: 0, mi: 0, miu: 0, i: 0, iu: 0, bi: 9007199254740993n, biu: 9007199254740993n,
    d: '0.000000000000000000000000000001', d2: '0.00', f: 0.10000000149011612, db: 0.1,
    dt: '0000-00-00', dtm: '0000-00-00 00:00:00.000000', dtm0: '0000-00-00 00:00:00', ts: '0000-00-00 00:00:00.000000+00',
    tm: '-00:00:00.500000', tm0: '00:00:00', tm3: '-12:34:56.789', y: 0,
    v: 'x', ch: 'a b', tx: 'x', bn: bytes('ff000000'), vb: bytes('00'), bl: bytes('00'), bt: '0000000001', b1: '1',
    b64: `1${'0'.repeat(62)}1`,
    e: 'back\\slash', s: ['s'], j: '{"a": [1, 2.5e300, null, true]}', u: 'ffffffff-ffff-ffff-ffff-ffffffffffff',
    ip4: '10.0.0.1', ip6: '::ffff:192.0.2.1',
  },
  4: { ...NULL_ROW, id: 4 },
  5: {
    id: 5, ti: -1, tiu: 1, si: -1, siu: 1, mi: -1, miu: 1, i: -1, iu: 1, bi: -9007199254740993n, biu: 9223372036854775808n,
    d: '-0.000000000000000000000000000001', d2: '99999999.99', f: -16777216, db: 1e-300,
    dt: '2024-00-15', dtm: '2024-02-29 12:00:00.100000', dtm0: '2024-02-29 00:00:00', ts: '2024-02-29 23:59:59.000000+00',
    tm: '24:00:00.000001', tm0: '-00:00:01', tm3: '100:00:00.000', y: 1999,
    v: 'ÿ', ch: 'ab', tx: '', bn: bytes('00000001'), vb: bytes('0000'), bl: bytes('00'), bt: '1000000000', b1: '0',
    b64: `${'0'.repeat(63)}1`,
    e: '', s: ['p', 's'], j: '"string"', u: '01234567-89ab-4def-8123-456789abcdef', ip4: '192.0.2.10', ip6: '2001:db8::1',
  },
};

const rowsOf = (batches: readonly ChangeBatch[]): ChangeEvent[] => batches.flatMap((b) => b.events);

function assertRow(actual: Row | null, expected: Row, label: string): void {
  assert.ok(actual, `${label}: row missing`);
  assert.deepEqual(Object.keys(actual), Object.keys(expected), `${label}: columns in table order`);
  for (const k of Object.keys(expected)) {
    assert.deepStrictEqual(actual[k], expected[k], `${label}: column ${k}`);
  }
}

describe('MariaDB type matrix', () => {
  let db: TestDatabase;
  let connector: MysqlConnector;
  const log = createLogger({ level: 'silent', format: 'json' });

  before(async () => {
    const url = requireEnv('CHARTLOG_TEST_MARIADB_URL');
    db = await createTestDatabase(url);
    await db.conn.query("SET SESSION sql_mode = '', time_zone = '+00:00'");
    await db.conn.query(DDL);
    await db.conn.query(`INSERT INTO m (${COLS}) VALUES ${INSERTS.join(',\n')}`);
    connector = new MysqlConnector({ name: 'types', url, tables: [`${db.name}.m`], mysql: { serverId: 4000 + Math.floor(Math.random() * 100000) } }, { log });
    await connector.check();
  });

  after(async () => {
    await connector?.close();
    await db?.drop();
  });

  it('snapshot and stream read every edge value exactly, before images included', async () => {
    assert.notEqual(new Date(0).getTimezoneOffset(), 0, 'the process runs in a non-UTC zone');
    const snap: ChangeBatch[] = [];
    for await (const b of connector.snapshot({ chunkRows: 2 })) snap.push(b);
    const read = rowsOf(snap);
    assert.equal(read.length, 5);
    assert.ok(read.every((e) => e.op === 'r' && e.before === null));
    assert.equal(snap[0]!.schemaChanges?.[0]?.table, 'm', 'the first batch carries the table version');
    assert.deepEqual(snap[0]!.schemaChanges?.[0]?.columns.find((c) => c.name === 'u')?.type, { kind: 'uuid' });
    assert.deepEqual(snap[0]!.schemaChanges?.[0]?.columns.find((c) => c.name === 'j')?.type, { kind: 'json' });
    assert.deepEqual(snap[0]!.schemaChanges?.[0]?.columns.find((c) => c.name === 'e')?.type.values, ['a,b', "it's", 'x', 'back\\slash']);
    for (const e of read) assertRow(e.after, EXPECTED[e.after!.id as number]!, `snapshot row ${String(e.after!.id)}`);
    assert.equal(new Set(read.map((e) => e.position.seq)).size, 5, 'snapshot events have distinct positions');

    const from = snap[0]!.position;
    await db.conn.query(`INSERT INTO m (${COLS}) SELECT id + 100, ${COLS.split(',').slice(1).join(',')} FROM m ORDER BY id`);
    await db.conn.query('UPDATE m SET v = v WHERE id = 0'); // no-op statement: no rows, no batch
    await db.conn.query("UPDATE m SET ti = 7 WHERE id IN (101, 102, 103, 104, 105)");
    await db.conn.query('DELETE FROM m WHERE id >= 101');
    const batches = await takeUntil((signal) => connector.stream({ from, signal }), (bs) => rowsOf(bs).length >= 15);
    assert.equal(batches.length, 3, 'one batch per transaction');
    const events = rowsOf(batches);
    assert.deepEqual(events.map((e) => e.op), [...'ccccc', ...'uuuuu', ...'ddddd']);
    for (let i = 0; i < 5; i++) {
      const id = i + 1;
      const inserted = { ...EXPECTED[id]!, id: id + 100 };
      assertRow(events[i]!.after, inserted, `stream insert ${id + 100}`);
      assertRow(events[5 + i]!.before, inserted, `stream update before ${id + 100}`);
      assertRow(events[5 + i]!.after, { ...inserted, ti: 7 }, `stream update after ${id + 100}`);
      assertRow(events[10 + i]!.before, { ...inserted, ti: 7 }, `stream delete before ${id + 100}`);
      assert.equal(events[10 + i]!.after, null);
    }
    for (const b of batches) {
      assert.ok(b.position.commit > from.commit, 'stream positions follow the snapshot position');
      assert.ok(b.commitTsUs > 1_600_000_000_000_000n && b.commitTsUs % 1_000_000n === 0n, 'commit time in µs, whole seconds');
      assert.ok(b.events.every((e, k) => e.position.commit === b.position.commit && e.position.seq === k));
    }
  });

  it('snapshots tables with a composite key and without a key, chunk by chunk, every row once', async () => {
    await db.conn.query('CREATE TABLE ck (a INT, b VARCHAR(10), v INT, PRIMARY KEY (a, b)); CREATE TABLE nk (v VARCHAR(10), n INT)');
    const ck = Array.from({ length: 23 }, (_, i) => `(${i % 4}, 'k${String(i).padStart(2, '0')}', ${i})`);
    const nk = Array.from({ length: 17 }, (_, i) => `('dup', ${i % 3})`); // duplicate rows, no key at all
    await db.conn.query(`INSERT INTO ck VALUES ${ck.join(',')}; INSERT INTO nk VALUES ${nk.join(',')}`);
    const c = new MysqlConnector({ name: 'keys', url: requireEnv('CHARTLOG_TEST_MARIADB_URL'), tables: [`${db.name}.ck`, `${db.name}.nk`], mysql: { serverId: 4_000_000 + Math.floor(Math.random() * 100000) } }, { log });
    try {
      const batches: ChangeBatch[] = [];
      for await (const b of c.snapshot({ chunkRows: 4 })) batches.push(b);
      const byTable = (t: string) => batches.filter((b) => b.events[0]?.schema.table === t || b.schemaChanges?.[0]?.table === t);
      const ckRows = rowsOf(byTable('ck')).map((e) => e.after!);
      assert.equal(ckRows.length, 23);
      const expected = Array.from({ length: 23 }, (_, i) => ({ a: i % 4, b: `k${String(i).padStart(2, '0')}`, v: i }))
        .sort((x, y) => x.a - y.a || (x.b < y.b ? -1 : 1));
      assert.deepStrictEqual(ckRows, expected, 'primary-key order, no row twice');
      assert.ok(byTable('ck').length >= 6, 'read in chunks');
      const nkRows = rowsOf(byTable('nk')).map((e) => e.after!);
      assert.equal(nkRows.length, 17, 'every row of a keyless table, duplicates included');
      assert.deepEqual(nkRows.map((r) => r.n).sort(), Array.from({ length: 17 }, (_, i) => i % 3).sort());
      assert.ok(byTable('nk').length >= 5, 'a keyless table is streamed in chunks too');
      assert.deepEqual(byTable('nk')[0]!.schemaChanges?.[0]?.primaryKey, []);
    } finally {
      await c.close();
    }
  });
});
