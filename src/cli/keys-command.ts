import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import { loadConfig } from '../config/load.js';
import type { Config } from '../config/schema.js';
import { ChartlogError, usageError } from '../core/errors.js';
import { KeyManager, sealAlgorithmOf } from '../phi/key-manager.js';
import type { KmsClientLike } from '../phi/keyring/aws-kms-keyring.js';
import { FileKeyring } from '../phi/keyring/file-keyring.js';
import type { Keyring } from '../phi/keyring/keyring.js';
import { backupRootOf, openKeyring } from '../phi/keyring/open-keyring.js';
import { openObjectStore } from '../storage/open-object-store.js';
import type { ObjectStore } from '../storage/object-store.js';

export interface KeysCommandDeps {
  /** The object store of a configuration (default: the real backend). */
  openObjectStore?: (storage: Config['storage']) => ObjectStore;
  /** A KMS client for awskms:// keyrings (tests); default: the SDK's. */
  kmsClient?: KmsClientLike;
  /** Where the command's report goes (default: stdout). Never key material. */
  print?: (line: string) => void;
}

/**
 * `chartlog keys init|rotate --config F`.
 *
 * - init: creates the keyring file (mode 0600, outside the backup root) when phi.keyring is a
 *   file:// that does not exist yet — an existing one is checked and kept — then stores a first
 *   data key for every source that has none.
 * - rotate: starts a new data-key generation for every source now (running processes adopt it
 *   within a minute); `--kek` first adds a new KEK version to a keyring file (old versions stay
 *   to unwrap older data keys).
 *
 * Key material is never printed; bad configuration exits 2 through loadConfig's error.
 */
export function registerKeysCommand(program: Command, deps: KeysCommandDeps = {}): void {
  const print = deps.print ?? ((line: string) => process.stdout.write(`${line}\n`));
  const keys = program.command('keys').description('manage the keys that seal PHI');

  keys
    .command('init')
    .description('create the keyring file (if file://) and a first data key for each source')
    .requiredOption('-c, --config <file>', 'configuration file (YAML)')
    .action(async (opts: { config: string }) => {
      const cfg = loadConfig(opts.config);
      const backupRoot = backupRootOf(cfg.storage.url);
      let keyring: Keyring;
      if (cfg.phi.keyring.startsWith('file://') && !existsSync(fileURLToPath(cfg.phi.keyring))) {
        const created = FileKeyring.create(fileURLToPath(cfg.phi.keyring), { backupRoot });
        print(`keyring: created ${created.path} (mode 0600, KEK ${created.kekIds().current})`);
        print('keyring: keep a copy in escrow, apart from the backups: without it sealed PHI cannot be opened');
        keyring = created;
      } else {
        keyring = openKeyring(cfg.phi.keyring, { backupRoot, kmsClient: deps.kmsClient });
        print(`keyring: using ${keyring.description}`);
      }
      await forEachSource(cfg, deps, keyring, async (name, manager) => {
        const existing = await manager.listKeyIds();
        if (existing.length > 0) {
          print(`source ${name}: ${existing.length} data key(s) already stored, newest ${existing[existing.length - 1]}`);
          return;
        }
        const dek = await manager.rotate();
        print(`source ${name}: data key ${dek.idHex} stored at ${manager.keyPath(dek.idHex)}`);
      });
    });

  keys
    .command('rotate')
    .description('start a new data-key generation now; --kek also adds a new KEK version to a keyring file')
    .requiredOption('-c, --config <file>', 'configuration file (YAML)')
    .option('--kek', 'add a new KEK version first (file:// keyrings; rotate AWS KMS keys in KMS)')
    .option('-s, --source <name>', 'only this source')
    .action(async (opts: { config: string; kek?: boolean; source?: string }) => {
      const cfg = loadConfig(opts.config);
      if (opts.source !== undefined && !cfg.sources.some((s) => s.name === opts.source)) {
        throw usageError(`--source ${opts.source}: no such source in ${opts.config}`, `use one of: ${cfg.sources.map((s) => s.name).join(', ')}`);
      }
      const backupRoot = backupRootOf(cfg.storage.url);
      let keyring = openKeyring(cfg.phi.keyring, { backupRoot, kmsClient: deps.kmsClient });
      if (opts.kek) {
        if (!(keyring instanceof FileKeyring)) {
          throw usageError('--kek applies to keyring files only', 'rotate an AWS KMS key in KMS (automatic key rotation keeps old versions for Decrypt)');
        }
        keyring = keyring.addKek();
        print(`keyring: new KEK ${(keyring as FileKeyring).kekIds().current} is current; older KEKs kept to unwrap older data keys`);
      }
      await forEachSource(cfg, deps, keyring, async (name, manager) => {
        const dek = await manager.rotate();
        print(`source ${name}: new data key ${dek.idHex} (running processes switch to it within a minute)`);
      }, opts.source);
    });
}

async function forEachSource(
  cfg: Readonly<Config>,
  deps: KeysCommandDeps,
  keyring: Keyring,
  fn: (name: string, manager: KeyManager) => Promise<void>,
  only?: string,
): Promise<void> {
  const store = (deps.openObjectStore ?? openObjectStore)(cfg.storage);
  try {
    for (const s of cfg.sources) {
      if (only !== undefined && s.name !== only) continue;
      await fn(s.name, new KeyManager({ source: s.name, store, keyring, rotation: cfg.phi.dekRotation, algorithm: sealAlgorithmOf(cfg.phi.algorithm) }));
    }
  } catch (err) {
    if (err instanceof ChartlogError) throw err;
    throw new ChartlogError('internal', err instanceof Error ? err.message : String(err));
  } finally {
    await store.close();
  }
}
