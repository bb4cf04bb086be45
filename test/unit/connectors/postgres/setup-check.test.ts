import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ensurePublication } from '../../../../connectors/postgres/setup-check.js';
import { ChartlogError } from '../../../../src/core/errors.js';

const names = { slot: 'chartlog_s', publication: 'chartlog_p', tables: ['public.t'] };
const state = { slotExists: false, slotConfirmedFlush: null, publicationExists: false, user: 'chartlog' };
const failingWith = (code: string) => ({
  query: async (): Promise<never> => {
    throw Object.assign(new Error('duplicate key value violates unique constraint "pg_publication_pubname_index"'), { code });
  },
});

test('ensurePublication: a publication another process created meanwhile stops this start with a retriable error naming it', async () => {
  for (const code of ['42710', '23505']) {
    await assert.rejects(ensurePublication(failingWith(code), names, state), (e: unknown) =>
      e instanceof ChartlogError && e.code === 'source_setup' && e.retriable && e.message.includes('chartlog_p'),
    );
  }
  // Any other failure goes on as it was (classified by the caller).
  await assert.rejects(ensurePublication(failingWith('42501'), names, state), (e: unknown) => !(e instanceof ChartlogError) && (e as { code?: string }).code === '42501');
  // An existing publication is not created again.
  let asked = 0;
  await ensurePublication({ query: async () => ((asked++), { rows: [] }) }, names, { ...state, publicationExists: true });
  assert.equal(asked, 0);
  await ensurePublication({ query: async () => ((asked++), { rows: [] }) }, names, state);
  assert.equal(asked, 1);
});
