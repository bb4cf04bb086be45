import assert from 'node:assert/strict';
import { test } from 'node:test';
import { identityProblem } from '../../../../connectors/postgres/setup-check.js';
import { rowKeys } from '../../../../connectors/postgres/type-catalog.js';

test('NOTHING and key-less DEFAULT are refused with the statement that fixes them (a config error: exit 2)', () => {
  const nothing = identityProblem({ name: 'public.t', identity: 'n', hasPk: false }, []);
  assert.ok(nothing);
  assert.equal(nothing.config, true);
  assert.match(nothing.fix, /ALTER TABLE "public"\."t" REPLICA IDENTITY FULL;/);
  assert.match(nothing.fix, /postgres\.insertOnlyTables/);
  const keyedNothing = identityProblem({ name: 'public.k', identity: 'n', hasPk: true }, []);
  assert.match(keyedNothing!.fix, /REPLICA IDENTITY DEFAULT;/);
  assert.ok(identityProblem({ name: 'public.t', identity: 'd', hasPk: false }, []));
});

test('identities that carry old rows pass; insert-only tables are exempt (and only those named)', () => {
  assert.equal(identityProblem({ name: 'public.t', identity: 'd', hasPk: true }, []), null);
  assert.equal(identityProblem({ name: 'public.t', identity: 'f', hasPk: false }, []), null);
  assert.equal(identityProblem({ name: 'public.t', identity: 'i', hasPk: false }, []), null);
  assert.equal(identityProblem({ name: 'public.t', identity: 'n', hasPk: false }, ['public.t']), null);
  assert.ok(identityProblem({ name: 'public.t', identity: 'n', hasPk: false }, ['public.other']));
});

test('rowKeys: the replica identity index is kept only when it is not the primary key, in index order', () => {
  assert.deepEqual(rowKeys([{ name: 'id', pos: 1 }], [{ name: 'id', pos: 1 }]), { primaryKey: ['id'] });
  assert.deepEqual(rowKeys([], [{ name: 'b', pos: 2 }, { name: 'a', pos: 1 }]), { primaryKey: [], replicaIdentity: ['a', 'b'] });
  assert.deepEqual(rowKeys([{ name: 'id', pos: 1 }], [{ name: 'code', pos: 1 }]), { primaryKey: ['id'], replicaIdentity: ['code'] });
  assert.deepEqual(rowKeys([], []), { primaryKey: [] });
});
