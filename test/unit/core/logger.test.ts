import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import { createLogger } from '../../../src/core/logger.js';

function capture() {
  const lines: string[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(chunk.toString('utf8'));
      done();
    },
  });
  return { lines, log: createLogger({ format: 'json', destination }) };
}

const CANARY = 'CANARY-SSN-987-65-4321';

test('row images, values and URLs are censored wherever they are logged', () => {
  const { lines, log } = capture();
  log.info({ table: 'public.patients', op: 'u', after: { ssn: CANARY }, before: { ssn: CANARY } }, 'change');
  log.info({ batch: { events: [{ after: { ssn: CANARY } }] } }, 'batch');
  log.warn({ detail: { row: { ssn: CANARY }, value: CANARY } }, 'nested');
  log.info({ url: `postgres://cdc:${CANARY}@h/db` }, 'connecting');
  const out = lines.join('');
  assert.equal(lines.length, 4);
  assert.ok(!out.includes(CANARY), 'a canary reached the log');
  assert.match(out, /"table":"public.patients"/);
  assert.match(out, /\[redacted\]/);
});

test('errors are logged without the properties drivers attach', () => {
  const { lines, log } = capture();
  const err = Object.assign(new Error('insert failed'), { code: '23505', parameters: [CANARY], detail: `Key (ssn)=(${CANARY})` });
  log.error({ err }, 'write failed');
  const out = lines.join('');
  assert.match(out, /insert failed/);
  assert.match(out, /23505/);
  assert.ok(!out.includes(CANARY));
});

test('counts stay readable where row data is censored', () => {
  const { lines, log } = capture();
  log.info({ table: 'public.patients', rows: 1200, values: 3 }, 'snapshot table read');
  log.info({ rows: [{ ssn: CANARY }], values: CANARY }, 'careless');
  const [counts, careless] = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
  assert.equal(counts?.rows, 1200);
  assert.equal(counts?.values, 3);
  assert.equal(careless?.rows, '[redacted]');
  assert.equal(careless?.values, '[redacted]');
});
