import assert from 'node:assert/strict';
import { test } from 'node:test';
import { AvroCodec, type DecodedChange } from '../../../src/codec/avro-codec.js';
import { SchemaStore } from '../../../src/codec/schema-store.js';
import { CodecEnvelopeReader } from '../../../src/archive/codec-envelope-reader.js';
import { replayArchive } from '../../../src/archive/replay.js';
import { qualifiedName } from '../../../src/core/table-schema.js';
import { buildArchive } from '../../support/snapshot-archive.js';

const SOURCE = 'clinic';

for (const open of [false, true]) {
  test(`replay reports each table's PHI columns and the version it ends on (${open ? 'opened' : 'kept sealed'})`, async () => {
    const a = await buildArchive({ hours: 2 });
    const schemas = new SchemaStore({ source: SOURCE, store: a.rig.store });
    const codec = open ? a.rig.reader({ withKeys: true }) : new AvroCodec({ source: SOURCE, connector: 'postgres', schemas });
    const seen: DecodedChange[] = [];
    const result = await replayArchive({
      store: a.rig.store,
      source: SOURCE,
      codec,
      schemas,
      envelopes: new CodecEnvelopeReader(schemas),
      to: { kind: 'latest' },
      open,
      beforeApply: (d) => void seen.push(d),
    });
    // Every change, and every row of the base snapshot (snapshot reads), once each.
    assert.equal(seen.filter((d) => d.event.op !== 'r').length, result.changes);
    assert.ok(seen.some((d) => d.event.op === 'r'));
    for (const [name, state] of result.tables) {
      const v = result.versions.get(name);
      assert.ok(v, name);
      const stored = await schemas.resolve(BigInt(`0x${v.fingerprint}`));
      assert.deepEqual(
        stored.version.table.columns.map((c) => c.name),
        state.schema.columns.map((c) => c.name),
        `${name}: the version it ends on`,
      );
      assert.deepEqual([...v.phiColumns].sort(), [...stored.version.sealed].sort(), name);
      const ever = new Set(seen.filter((d) => qualifiedName(d.event.schema) === name).flatMap((d) => [...d.phiColumns]));
      assert.deepEqual([...v.everPhiColumns].sort(), [...ever].sort(), name);
    }
    assert.deepEqual([...result.versions.get('public.patients')!.everPhiColumns].sort(), ['full_name', 'ssn']);
    assert.deepEqual([...result.versions.get('public.audit')!.everPhiColumns], []);
    for (const d of seen) {
      assert.deepEqual(d.sealedColumns, open ? [] : d.phiColumns, 'sealed until opened');
      if (qualifiedName(d.event.schema) === 'public.patients') assert.deepEqual([...d.phiColumns].sort(), ['full_name', 'ssn']);
    }
  });
}

test('what beforeApply throws ends the replay with that error', async () => {
  const a = await buildArchive({ hours: 1 });
  const schemas = new SchemaStore({ source: SOURCE, store: a.rig.store });
  const refusal = new Error('refused');
  let calls = 0;
  await assert.rejects(
    replayArchive({
      store: a.rig.store,
      source: SOURCE,
      codec: new AvroCodec({ source: SOURCE, connector: 'postgres', schemas }),
      schemas,
      envelopes: new CodecEnvelopeReader(schemas),
      to: { kind: 'latest' },
      open: false,
      beforeApply: async () => {
        if (++calls === 3) throw refusal;
      },
    }),
    (e: unknown) => e === refusal,
  );
  assert.equal(calls, 3);
});
