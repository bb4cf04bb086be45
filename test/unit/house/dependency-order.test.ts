import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { test } from 'node:test';
import { ESLint } from 'eslint';
import { FOLDER_ORDER } from '../../../eslint.config.js';

/**
 * The folders import in one direction only (docs/architecture.md). The lint rule is what keeps
 * it so; these tests plant the imports a new loop would add and check the rule refuses them,
 * so a rule that silently stopped matching (a renamed folder, a changed path style) fails here.
 */
const eslint = new ESLint();

async function restrictedImportErrors(filePath: string, code: string): Promise<string[]> {
  const [result] = await eslint.lintText(code, { filePath });
  return result!.messages.filter((m) => m.ruleId === 'no-restricted-imports').map((m) => m.message);
}

const planted: [string, string, RegExp][] = [
  ['src/core/planted.ts', "import type { EmbeddedBus } from '../bus/embedded-bus.js';\nexport type X = EmbeddedBus;\n", /src\/core may import only folders before it/],
  ['src/core/planted.ts', "import type { Config } from '../config/schema.js';\nexport type X = Config;\n", /src\/core may import only/],
  ['src/archive/planted.ts', "export { restoreArchive } from '../restore/restore.js';\n", /src\/archive may import only/],
  ['src/compactor/planted.ts', "import { verifyArchive } from '../restore/verify.js';\nexport const v = verifyArchive;\n", /src\/compactor may import only/],
  ['src/restore/targets/planted.ts', "import { Compactor } from '../../compactor/compactor.js';\nexport const c = Compactor;\n", /src\/restore may import only/],
  ['src/phi/keyring/planted.ts', "import { AvroCodec } from '../../codec/avro-codec.js';\nexport const c = AvroCodec;\n", /src\/phi may import only/],
  ['src/bus/planted.ts', "import { createConnector } from '../../connectors/registry.js';\nexport const c = createConnector;\n", /must not know the connectors/],
  ['connectors/postgres/planted.ts', "import type { Config } from '../../src/config/schema.js';\nexport type X = Config;\n", /connectors import only src\/core/],
  ['connectors/mysql/planted.ts', "import { parseLsn } from '../postgres/lsn.js';\nexport const l = parseLsn;\n", /does not import another connector/],
];

for (const [file, code, message] of planted) {
  test(`lint refuses an upward import planted in ${file}`, async () => {
    const errors = await restrictedImportErrors(file, code);
    assert.equal(errors.length, 1, `expected one restricted-import error, got ${JSON.stringify(errors)}`);
    assert.match(errors[0]!, message);
  });
}

test('lint accepts imports that follow the order', async () => {
  const allowed: [string, string][] = [
    ['src/bus/planted.ts', "import type { BusBatch } from '../codec/bus-message.js';\nexport type X = BusBatch;\n"],
    ['src/restore/planted.ts', "import { readArchiveIndex } from '../archive/archive-index.js';\nexport const r = readArchiveIndex;\n"],
    ['src/pipeline/planted.ts', "import { createConnector } from '../../connectors/registry.js';\nexport const c = createConnector;\n"],
    ['connectors/postgres/planted.ts', "import { Position } from '../../src/core/position.js';\nimport { parseLsn } from './lsn.js';\nexport const p = [Position, parseLsn];\n"],
  ];
  for (const [file, code] of allowed) assert.deepEqual(await restrictedImportErrors(file, code), [], file);
});

test('every folder of src/ has its place in the order', () => {
  const folders = readdirSync('src', { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => e.name);
  const ordered = new Set(FOLDER_ORDER.flat());
  assert.deepEqual(folders.filter((f) => !ordered.has(f)), [], 'add the new folder to FOLDER_ORDER in eslint.config.js and to docs/architecture.md');
});
