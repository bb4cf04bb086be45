import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after } from 'node:test';
import { FileKeyring } from '../../src/phi/keyring/file-keyring.js';
import type { TestDatabase } from './restore-engines.js';

/**
 * The setting most end-to-end tests start from: a temporary folder, a source database, a file
 * keyring in the folder, the path of the config file the test writes, and any further databases
 * (restore targets) — all dropped or removed when the test file ends (the folder kept with KEEP=1).
 */
export interface TestWorkspace {
  readonly work: string;
  readonly source: TestDatabase;
  /** `keys/keyring.json` in the folder, already created. */
  readonly keyring: string;
  /** `chartlog.yaml` in the folder: the test writes it. */
  readonly configFile: string;
  /** A new database of the same engine, dropped at the end; the prefix defaults to the workspace's. */
  newDb(prefix?: string): Promise<TestDatabase>;
  /**
   * A step for the end of the test (stop a writer, close `chartlog run`), run before the
   * databases are dropped; the last registered runs first.
   */
  onEnd(step: () => unknown): void;
}

export async function testWorkspace(prefix: string, createDatabase: (prefix: string) => Promise<TestDatabase>): Promise<TestWorkspace> {
  const created: TestDatabase[] = [];
  const steps: (() => unknown)[] = [];
  const work = mkdtempSync(join(tmpdir(), `chartlog-${prefix}-`));
  after(async () => {
    for (const step of steps.reverse()) await step();
    for (const db of created) await db.drop();
    if (!process.env.KEEP) rmSync(work, { recursive: true, force: true });
  });
  const newDb = async (dbPrefix = prefix): Promise<TestDatabase> => {
    const db = await createDatabase(dbPrefix);
    created.push(db);
    return db;
  };
  const source = await newDb();
  const keyring = join(work, 'keys', 'keyring.json');
  mkdirSync(join(work, 'keys'), { mode: 0o700 });
  FileKeyring.create(keyring);
  return { work, source, keyring, configFile: join(work, 'chartlog.yaml'), newDb, onEnd: (step) => steps.push(step) };
}
