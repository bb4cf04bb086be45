import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import {
  committedBy, formatMariadbGtid, mariadbCommit, mariadbGtidOf, mariadbPosition, mariadbStart, mysqlCommit, mysqlGtidOf,
  mysqlGtidSetSize, mysqlResumeSet, mysqlSnapshotGtid, parseMariadbGtid, parseMariadbGtidList,
} from '../../../../connectors/mysql/binlog-position.js';
import { COMMIT_SEQ, Position } from '../../../../src/core/position.js';

describe('MariaDB commit positions', () => {
  it('has a fixed-width lowercase hex form', () => {
    assert.equal(mariadbCommit({ domain: 0, server: 1, seq: 42n }), '00000000-000000000000002a-00000001');
    assert.equal(mariadbCommit({ domain: 4294967295, server: 4294967295, seq: 2n ** 64n - 1n }), 'ffffffff-ffffffffffffffff-ffffffff');
    assert.equal(Position.format(mariadbPosition(parseMariadbGtid('0-1-42'))), '00000000-000000000000002a-00000001.ffffffff');
  });

  it('orders by sequence within a domain whatever the server id (failover changes it)', () => {
    fc.assert(fc.property(
      fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }), fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
      fc.integer({ min: 0, max: 0xffffffff }), fc.integer({ min: 0, max: 0xffffffff }), fc.integer({ min: 0, max: 0xffffffff }),
      (a, b, sa, sb, domain) => {
        fc.pre(a !== b);
        const pa = mariadbPosition({ domain, server: sa, seq: a });
        const pb = mariadbPosition({ domain, server: sb, seq: b });
        assert.equal(Math.sign(Position.compare(pa, pb)), a < b ? -1 : 1);
      },
    ));
  });

  it('round-trips through the commit string, the position text and the server\'s GTID text', () => {
    fc.assert(fc.property(
      fc.integer({ min: 0, max: 0xffffffff }), fc.integer({ min: 0, max: 0xffffffff }), fc.bigInt({ min: 1n, max: 2n ** 64n - 1n }),
      (domain, server, seq) => {
        const g = { domain, server, seq };
        assert.deepEqual(mariadbGtidOf(mariadbCommit(g)), g);
        assert.deepEqual(parseMariadbGtid(formatMariadbGtid(g)), g);
        const p = mariadbPosition(g, 7);
        assert.deepEqual(Position.parse(Position.format(p)), p);
      },
    ));
  });

  it('start position sorts before every transaction of its domain and resumes from the first binlog', () => {
    const start = mariadbStart(0);
    assert.equal(start.seq, COMMIT_SEQ);
    assert.ok(Position.compare(start, mariadbPosition({ domain: 0, server: 9, seq: 1n }, 0)) < 0);
    assert.equal(formatMariadbGtid(mariadbGtidOf(start.commit)!), '');
  });

  it('parses GTID lists and rejects garbage', () => {
    assert.deepEqual(parseMariadbGtidList(''), []);
    assert.deepEqual(parseMariadbGtidList('0-1-5,3-2-18446744073709551615'), [
      { domain: 0, server: 1, seq: 5n },
      { domain: 3, server: 2, seq: 18446744073709551615n },
    ]);
    assert.throws(() => parseMariadbGtid('0-1'), /not a MariaDB GTID/);
    assert.equal(mariadbGtidOf('000000000000002a.ffffffff'), null);
  });
});

describe('MySQL commit positions', () => {
  it('count the transactions of a GTID set (the ordinal)', () => {
    assert.equal(mysqlGtidSetSize(''), 0n);
    assert.equal(mysqlGtidSetSize('3E11FA47-71CA-11E1-9E33-C80AA9429562:1-5:7,\n4e11fa47-71ca-11e1-9e33-c80aa9429562:1-3'), 9n);
    assert.equal(mysqlGtidSetSize('3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5:tag_a:1-2'), 7n);
  });

  it('order by ordinal, not by uuid or gno (a promoted primary restarts gno at 1)', () => {
    const before = Position.of(mysqlCommit({ ordinal: 100n, gno: 100n, uuid: 'ffffffff-71ca-11e1-9e33-c80aa9429562' }));
    const after = Position.of(mysqlCommit({ ordinal: 101n, gno: 1n, uuid: '00000000-71ca-11e1-9e33-c80aa9429562' }));
    assert.ok(Position.compare(before, after) < 0);
    assert.deepEqual(mysqlGtidOf(after.commit), { ordinal: 101n, gno: 1n, uuid: '00000000-71ca-11e1-9e33-c80aa9429562' });
    assert.equal(mysqlGtidOf(mariadbCommit({ domain: 0, server: 1, seq: 1n })), null);
  });
});

describe('MySQL resume sets', () => {
  const A = 'aaaaaaaa-0000-0000-0000-000000000001';
  const B = 'bbbbbbbb-0000-0000-0000-000000000002';
  const C = 'cccccccc-0000-0000-0000-000000000003';

  it('one primary: its uuid up to the gno', () => {
    assert.equal(mysqlResumeSet(`${A}:1-100`, { ordinal: 42n, uuid: A, gno: 42n }), `${A}:1-42`);
    assert.equal(mysqlResumeSet(`${A}:1-100`, { ordinal: 0n, uuid: A, gno: 0n }), '');
  });

  it('after failovers: the older primaries whole, the newer ones not at all', () => {
    // A wrote 1-50, then B (promoted) wrote 1-30, then C wrote 1-5.
    const executed = `${A}:1-50,\n${B}:1-30,${C}:1-5`;
    assert.equal(mysqlResumeSet(executed, { ordinal: 60n, uuid: B, gno: 10n }), `${A}:1-50,${B}:1-10`);
    assert.equal(mysqlResumeSet(executed, { ordinal: 40n, uuid: A, gno: 40n }), `${A}:1-40`);
    assert.equal(mysqlResumeSet(executed, { ordinal: 83n, uuid: C, gno: 3n }), `${A}:1-50,${B}:1-30,${C}:1-3`);
  });

  it('refuses when the server lacks the transaction or the history is ambiguous', () => {
    assert.throws(() => mysqlResumeSet(`${A}:1-10`, { ordinal: 20n, uuid: A, gno: 20n }), /has not executed/);
    // B and C both hold 10: which one came before A's transaction 5?
    assert.throws(() => mysqlResumeSet(`${A}:1-10,${B}:1-10,${C}:1-10`, { ordinal: 15n, uuid: A, gno: 5n }), /cannot be rebuilt .*2 candidates/);
    assert.throws(() => mysqlResumeSet(`${A}:1-10:tag:1`, { ordinal: 1n, uuid: A, gno: 1n }), /tags/);
  });

  it('a snapshot position resumes at exactly the snapshot\'s set', () => {
    const executed = `${A}:1-50,${B}:1-30`;
    const g = mysqlSnapshotGtid(executed, B);
    assert.deepEqual(g, { ordinal: 80n, uuid: B, gno: 30n });
    assert.equal(mysqlResumeSet(executed, g), `${A}:1-50,${B}:1-30`);
    assert.deepEqual(mysqlSnapshotGtid('', B), { ordinal: 0n, uuid: B, gno: 0n });
    assert.equal(mysqlResumeSet(`${A}:1-3`, mysqlSnapshotGtid('', B)), '');
  });
});

describe('committedBy: whether a transaction had committed when the server printed its GTID head', () => {
  it('MariaDB: at or below its domain\'s entry of @@gtid_binlog_pos', () => {
    const c = mariadbCommit({ domain: 0, server: 1, seq: 42n });
    assert.equal(committedBy(c, '0-1-42'), true);
    assert.equal(committedBy(c, '0-1-100,1-2-5'), true);
    assert.equal(committedBy(c, '0-1-41'), false, 'a later statement is not in the head');
    assert.equal(committedBy(c, '1-1-500'), false, 'another domain says nothing of it');
    assert.equal(committedBy(c, ''), false);
  });
  it('MySQL: in @@gtid_executed', () => {
    const uuid = '3e11fa47-71ca-11e1-9e33-c80aa9429562';
    const c = mysqlCommit({ ordinal: 7n, uuid, gno: 7n });
    assert.equal(committedBy(c, `${uuid}:1-7`), true);
    assert.equal(committedBy(c, `${uuid.toUpperCase()}:1-3:5-9`), true);
    assert.equal(committedBy(c, `${uuid}:1-6`), false);
  });
  it('a commit string of neither kind counts as committed (the caller fails closed)', () => {
    assert.equal(committedBy('not-a-commit', '0-1-1'), true);
  });
});
