import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { closeSync, existsSync, fsyncSync, openSync, readFileSync, realpathSync, renameSync, statSync, writeSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { ChartlogError } from '../../core/errors.js';
import type { KeyContext, Keyring, WrappedKey } from './keyring.js';

/**
 * The local keyring file: a JSON file holding one or more 256-bit KEKs (the newest wraps new
 * data keys, older ones stay to unwrap data keys they wrapped). Created by `chartlog keys init`
 * with mode 0600; refused when group- or world-accessible, or when it sits inside the backup
 * root (a copy of the backups must never carry its key).
 *
 *   { "format": 1, "current": "kek-0001", "keks": [{ "id": "kek-0001", "createdAt": "…", "key": "<base64>" }] }
 *
 * DEKs are wrapped with AES-256-GCM: base64(nonce 12 | ciphertext | tag 16), AAD binding the
 * source and key id.
 */

interface KeyringFile {
  format: 1;
  current: string;
  keks: { id: string; createdAt: string; key: string }[];
}

export interface FileKeyringOptions {
  /** The backup root as an absolute path (file:// stores); the keyring must not be inside it. */
  backupRoot?: string;
}

export class FileKeyring implements Keyring {
  readonly description: string;
  private readonly keks: ReadonlyMap<string, Buffer>;
  private readonly current: string;

  private constructor(readonly path: string, file: KeyringFile) {
    this.description = `keyring file ${path}`;
    this.keks = new Map(file.keks.map((k) => [k.id, Buffer.from(k.key, 'base64')]));
    this.current = file.current;
  }

  /** Creates a new keyring file with one KEK; refuses to overwrite one. */
  static create(path: string, options: FileKeyringOptions = {}): FileKeyring {
    const abs = resolve(path);
    checkOutsideRoot(abs, options.backupRoot);
    const file: KeyringFile = { format: 1, current: 'kek-0001', keks: [newKek('kek-0001')] };
    let fd: number;
    try {
      fd = openSync(abs, 'wx', 0o600);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'EEXIST') {
        throw new ChartlogError('already_exists', `keyring file ${abs} already exists`, {
          hint: 'keep it (it holds the keys of existing backups); use `chartlog keys rotate --kek` to add a new KEK',
        });
      }
      throw new ChartlogError('storage', `cannot create keyring file ${abs}: ${code ?? 'error'}`, {
        hint: `check that ${dirname(abs)} exists and is writable`,
      });
    }
    try {
      writeSync(fd, JSON.stringify(file, null, 2) + '\n');
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    return new FileKeyring(abs, file);
  }

  /** Opens an existing keyring file after checking where it is and who can read it. */
  static open(path: string, options: FileKeyringOptions = {}): FileKeyring {
    const abs = resolve(path);
    checkOutsideRoot(abs, options.backupRoot);
    let mode: number;
    try {
      mode = statSync(abs).mode;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      throw new ChartlogError(code === 'ENOENT' ? 'not_found' : 'storage', `cannot open keyring file ${abs}: ${code ?? 'error'}`, {
        hint: code === 'ENOENT' ? 'create it with `chartlog keys init --config FILE`, or fix phi.keyring' : 'check the file and its permissions',
      });
    }
    if ((mode & 0o077) !== 0) {
      throw new ChartlogError('config', `keyring file ${abs} is readable by group or others (mode ${(mode & 0o777).toString(8)})`, {
        hint: `run: chmod 600 ${abs}`,
      });
    }
    let file: KeyringFile;
    try {
      file = JSON.parse(readFileSync(abs, 'utf8')) as KeyringFile;
    } catch {
      throw new ChartlogError('config', `keyring file ${abs} is not valid JSON`, { hint: 'restore it from your key escrow copy' });
    }
    if (file.format !== 1 || !Array.isArray(file.keks) || !file.keks.some((k) => k.id === file.current)) {
      throw new ChartlogError('config', `keyring file ${abs} is not a chartlog keyring (format 1 with a current KEK)`, {
        hint: 'restore it from your key escrow copy',
      });
    }
    for (const k of file.keks) {
      if (Buffer.from(k.key, 'base64').length !== 32) {
        throw new ChartlogError('config', `keyring file ${abs}: KEK ${k.id} is not 256 bits`, { hint: 'restore it from your key escrow copy' });
      }
    }
    return new FileKeyring(abs, file);
  }

  /** KEK ids, oldest first, and which one wraps new data keys. */
  kekIds(): { ids: string[]; current: string } {
    return { ids: [...this.keks.keys()], current: this.current };
  }

  /**
   * Adds a new KEK version and makes it current; old ones stay so existing data keys still
   * unwrap. The file is replaced atomically, keeping mode 0600. Returns the reopened keyring.
   */
  addKek(): FileKeyring {
    const file = JSON.parse(readFileSync(this.path, 'utf8')) as KeyringFile;
    const next = `kek-${String(file.keks.length + 1).padStart(4, '0')}`;
    file.keks.push(newKek(next));
    file.current = next;
    const tmp = `${this.path}.tmp-${process.pid}`;
    const fd = openSync(tmp, 'wx', 0o600);
    try {
      writeSync(fd, JSON.stringify(file, null, 2) + '\n');
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, this.path);
    return new FileKeyring(this.path, file);
  }

  async wrapKey(dek: Uint8Array, context: KeyContext): Promise<WrappedKey> {
    const kek = this.keks.get(this.current)!;
    const nonce = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', kek, nonce, { authTagLength: 16 });
    cipher.setAAD(wrapAad(context, this.current));
    const body = Buffer.concat([cipher.update(dek), cipher.final()]);
    return { provider: 'file', kekId: this.current, ciphertext: Buffer.concat([nonce, body, cipher.getAuthTag()]).toString('base64') };
  }

  async unwrapKey(wrapped: WrappedKey, context: KeyContext): Promise<Uint8Array> {
    let kek = wrapped.provider === 'file' ? this.keks.get(wrapped.kekId) : undefined;
    if (!kek && wrapped.provider === 'file') {
      // `keys rotate --kek` may have added it since this process read the file.
      kek = FileKeyring.open(this.path).keks.get(wrapped.kekId);
    }
    if (!kek) {
      throw new ChartlogError('auth', `data key ${context.keyId} was wrapped by ${wrapped.provider} KEK ${wrapped.kekId}, which ${this.description} does not hold`, {
        hint: 'configure phi.keyring with the keyring that wrapped it (older KEK versions must stay in the file)',
      });
    }
    const blob = Buffer.from(wrapped.ciphertext, 'base64');
    try {
      const decipher = createDecipheriv('aes-256-gcm', kek, blob.subarray(0, 12), { authTagLength: 16 });
      decipher.setAAD(wrapAad(context, wrapped.kekId));
      decipher.setAuthTag(blob.subarray(blob.length - 16));
      return new Uint8Array(Buffer.concat([decipher.update(blob.subarray(12, blob.length - 16)), decipher.final()]));
    } catch {
      throw new ChartlogError('integrity', `data key ${context.keyId} of source ${context.source} failed to unwrap with KEK ${wrapped.kekId}`, {
        hint: 'the wrapped key object is damaged or belongs to another keyring; restore keys/ from an intact copy',
      });
    }
  }
}

function newKek(id: string): KeyringFile['keks'][number] {
  return { id, createdAt: new Date().toISOString(), key: randomBytes(32).toString('base64') };
}

function wrapAad(context: KeyContext, kekId: string): Buffer {
  return Buffer.from(JSON.stringify(['chartlog-dek-v1', context.source, context.keyId, kekId]));
}

/** Real path of `p`, or of its nearest existing ancestor joined with the rest (symlinks resolved). */
function realish(p: string): string {
  if (existsSync(p)) return realpathSync(p);
  const parent = dirname(p);
  return parent === p ? p : `${realish(parent).replace(/\/+$/, '')}/${p.slice(parent.length).replace(/^\/+/, '')}`;
}

function checkOutsideRoot(abs: string, backupRoot: string | undefined): void {
  if (backupRoot === undefined) return;
  const candidates = [resolve(backupRoot).replace(/\/+$/, ''), realish(resolve(backupRoot)).replace(/\/+$/, '')];
  const paths = [abs, realish(abs)];
  const root = candidates[0]!;
  if (candidates.some((r) => paths.some((a) => a === r || a.startsWith(r + '/')))) {
    throw new ChartlogError('config', `keyring file ${abs} is inside the backup root ${root}`, {
      hint: 'move the keyring outside the backup root and update phi.keyring, so a copy of the backups never carries its key',
    });
  }
}
