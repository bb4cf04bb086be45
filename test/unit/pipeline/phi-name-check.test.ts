import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseConfig } from '../../../src/config/load.js';
import type { SourceConfig } from '../../../src/config/schema.js';
import type { ChartlogError } from '../../../src/core/errors.js';
import type { TableSchema } from '../../../src/core/table-schema.js';
import { checkSourceReady } from '../../../src/pipeline/prepare-source.js';
import { runSourcePipeline } from '../../../src/pipeline/source-pipeline.js';
import { envelopes } from '../../support/fake-envelopes.js';
import { MemoryObjectStore } from '../../support/memory-object-store.js';
import { ScriptedConnector, scriptedEncoder } from '../../support/scripted-source.js';

// Where the PHI name check runs: in runSourcePipeline, right after connector.check(), before the
// writer lease is taken, the checkpoint read or anything written. The check itself: test/unit/phi/phi-names.test.ts.

const patients: TableSchema = {
  schema: 'public',
  table: 'patients',
  primaryKey: ['id'],
  columns: ['id', 'full_name', 'ssn'].map((name) => ({ name, sourceType: 'text', type: { kind: 'string' }, nullable: false })),
};

/** The scripted source, its catalog holding public.patients with columns; records the calls. */
class CatalogSource extends ScriptedConnector {
  readonly calls: string[] = [];
  constructor(private readonly catalog: readonly TableSchema[] = [patients]) {
    super(3);
  }
  override async check() {
    this.calls.push('check');
  }
  override async tables() {
    this.calls.push('tables');
    return this.catalog;
  }
}

const configWith = (phi: string, sources = 'sources: [{ name: clinic, type: postgres, url: "postgres://x@127.0.0.1:1/db" }]') =>
  parseConfig(`${sources}\nstorage: { url: "file:///nowhere" }\nphi: { keyring: "file:///k.json", ${phi} }\nsegments: { flushIntervalMs: 50 }\n`, 'test.yaml', {});

test('chartlog run refuses a misspelt PHI column after the setup check, with nothing written to the store', async () => {
  const config = configWith('columns: { public.patients: [SNN] }');
  const store = new MemoryObjectStore();
  const connector = new CatalogSource();
  await assert.rejects(
    runSourcePipeline({ config, source: config.sources[0]!, connector, encoder: scriptedEncoder(), envelopes, store }, new AbortController().signal),
    (e: ChartlogError) => {
      assert.equal(e.code, 'config');
      assert.equal(e.exitCode, 2);
      assert.match(e.message, /phi\.columns\."public\.patients"\[0\] = "SNN"/);
      assert.match(e.hint ?? '', /did you mean "ssn"\?/);
      return true;
    },
  );
  assert.deepEqual(connector.calls, ['check', 'tables'], 'the setup check first, then the catalog');
  assert.equal(connector.streams.length, 0, 'nothing read');
  assert.equal(store.objects.size, 0, 'nothing written');
});

test('a PHI name in another case passes the check', async () => {
  const config = configWith('columns: { public.Patients: [SSN, full_name] }, strict: [public.Patients], publicColumns: { public.patients: [ID] }');
  await checkSourceReady({ config, source: config.sources[0]!, connector: new CatalogSource() });
});

test('several sources: a PHI table no source lists is looked up in the other sources that capture every table', async () => {
  const config = configWith(
    'columns: { public.patients: [ssn], lab.results: [mrn] }',
    'sources: [{ name: clinic, type: postgres, url: "postgres://x@127.0.0.1:1/a" }, { name: lab, type: mysql, url: "mysql://x@127.0.0.1:1/b" }]',
  );
  const results: TableSchema = { schema: 'lab', table: 'results', primaryKey: [], columns: [{ name: 'mrn', sourceType: 'text', type: { kind: 'string' }, nullable: true }] };
  const asked: string[] = [];
  const peerTables = async (s: Readonly<SourceConfig>) => {
    asked.push(s.name);
    return [results];
  };
  await checkSourceReady({ config, source: config.sources[0]!, connector: new CatalogSource(), peerTables });
  assert.deepEqual(asked, ['lab']);
  await assert.rejects(
    checkSourceReady({ config, source: config.sources[0]!, connector: new CatalogSource(), peerTables: async () => [] }),
    (e: ChartlogError) => e.code === 'config' && /no table lab\.results is captured by any configured source \(clinic, lab\)/.test(e.message),
  );
  await assert.rejects(
    checkSourceReady({ config, source: config.sources[0]!, connector: new CatalogSource() }),
    (e: ChartlogError) => e.code === 'config',
    'without a way to read the other source, the name counts as captured nowhere',
  );
});
