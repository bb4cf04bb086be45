import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ChartlogError } from '../../../src/core/errors.js';
import { NO_TEST_HOOKS, readTestHooks } from '../../../src/config/test-hooks.js';

test('test hooks: none set leaves chartlog as configured', () => {
  assert.deepEqual(readTestHooks({}), NO_TEST_HOOKS);
  assert.deepEqual(readTestHooks({ CHARTLOG_TEST_KAFKA_DROP_GROUP: '', CHARTLOG_TEST_LOST_AFTER_MS: '' }), NO_TEST_HOOKS);
});

test('test hooks: read once into a frozen value', () => {
  const hooks = readTestHooks({ CHARTLOG_TEST_KAFKA_DROP_GROUP: '2', CHARTLOG_TEST_LOST_AFTER_MS: '3000' });
  assert.deepEqual(hooks, { kafkaDropGroup: 2, lostAfterMs: 3000 });
  assert.ok(Object.isFrozen(hooks));
});

test('test hooks: a value that is not a whole number is refused with exit 2, naming the variable', () => {
  for (const [name, value] of [
    ['CHARTLOG_TEST_KAFKA_DROP_GROUP', 'one'],
    ['CHARTLOG_TEST_KAFKA_DROP_GROUP', '-1'],
    ['CHARTLOG_TEST_LOST_AFTER_MS', '0'],
    ['CHARTLOG_TEST_LOST_AFTER_MS', '1.5'],
  ] as const) {
    assert.throws(
      () => readTestHooks({ [name]: value }),
      (err: unknown) => err instanceof ChartlogError && err.exitCode === 2 && err.message.includes(name) && err.message.includes(JSON.stringify(value)),
      `${name}=${value}`,
    );
  }
});
