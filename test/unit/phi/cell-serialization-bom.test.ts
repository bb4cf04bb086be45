import assert from 'node:assert/strict';
import { test } from 'node:test';
import { deserializeCell, serializeCell } from '../../../src/phi/cell-serialization.js';

test('a text value that starts with U+FEFF keeps it through serialisation (TextDecoder strips it by default)', () => {
  for (const v of ['\uFEFFname', '\uFEFF', 'a\uFEFF']) assert.equal(deserializeCell(serializeCell(v)), v);
});
