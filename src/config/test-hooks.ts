import { ChartlogError } from '../core/errors.js';

/**
 * Test-only hooks: the one place that reads them, from the environment, once, when `chartlog
 * run` starts; they reach the code they change as plain options (KafkaPipelineOptions,
 * KafkaBusOptions), so nothing deeper reads the environment. They exist so integration tests
 * can plant a failure a real cluster gives only by chance; an operator never sets them, and an
 * unset variable leaves chartlog exactly as configured (docs/operations.md, "Test hooks").
 */
export interface TestHooks {
  /**
   * CHARTLOG_TEST_KAFKA_DROP_GROUP=N: the Kafka bus does not send the table messages of the Nth
   * group of transactions it sends (its BEGIN/END records are sent) but reports them
   * acknowledged, as kafkajs 2.2.4 can when a partition leader dies mid-send (tulios/kafkajs#1303).
   * 0: off.
   */
  readonly kafkaDropGroup: number;
  /**
   * CHARTLOG_TEST_LOST_AFTER_MS: how long a transaction Kafka acknowledged may stay unsettled
   * before it is judged lost and the source read again (default 60 s; lost-transaction.ts).
   */
  readonly lostAfterMs: number | undefined;
}

export const NO_TEST_HOOKS: TestHooks = Object.freeze({ kafkaDropGroup: 0, lostAfterMs: undefined });

/** The hooks set in `env`. A value that is not a whole number is refused (exit 2), naming the variable. */
export function readTestHooks(env: NodeJS.ProcessEnv = process.env): TestHooks {
  return Object.freeze({
    kafkaDropGroup: wholeNumber(env, 'CHARTLOG_TEST_KAFKA_DROP_GROUP', 0) ?? 0,
    lostAfterMs: wholeNumber(env, 'CHARTLOG_TEST_LOST_AFTER_MS', 1),
  });
}

function wholeNumber(env: NodeJS.ProcessEnv, name: string, min: number): number | undefined {
  const text = env[name];
  if (text === undefined || text === '') return undefined;
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n < min) {
    throw new ChartlogError('config', `${name}=${JSON.stringify(text)} is not a whole number of at least ${min}; nothing was started`, {
      hint: `${name} is a test-only hook: unset it (docs/operations.md, "Test hooks")`,
    });
  }
  return n;
}
