import { fileURLToPath } from 'node:url';
import { ChartlogError } from '../../core/errors.js';
import { AwsKmsKeyring, parseKmsUrl, type KmsClientLike } from './aws-kms-keyring.js';
import { FileKeyring } from './file-keyring.js';
import type { Keyring } from './keyring.js';

export interface OpenKeyringOptions {
  /** The backup root as an absolute path, when the store is file://; a keyring file inside it is refused. */
  backupRoot?: string;
  /** A KMS client to use instead of the SDK's (tests). */
  kmsClient?: KmsClientLike;
}

/** The keyring `phi.keyring` names: file:///abs/path.json or awskms://<key-arn>. */
export function openKeyring(url: string, options: OpenKeyringOptions = {}): Keyring {
  if (url.startsWith('file://')) return FileKeyring.open(fileURLToPath(url), { backupRoot: options.backupRoot });
  if (url.startsWith('awskms://')) {
    return options.kmsClient ? new AwsKmsKeyring(parseKmsUrl(url).arn, options.kmsClient) : AwsKmsKeyring.fromUrl(url);
  }
  throw new ChartlogError('config', `phi.keyring "${url}" has an unknown scheme`, {
    hint: 'use file:///abs/path/keyring.json or awskms://<key-arn>',
  });
}

/** The backup root path of a file:// storage URL, or undefined for other stores. */
export function backupRootOf(storageUrl: string): string | undefined {
  return storageUrl.startsWith('file://') ? fileURLToPath(storageUrl) : undefined;
}
