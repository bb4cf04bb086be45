import type { DecryptCommand, EncryptCommand } from '@aws-sdk/client-kms';
import { ChartlogError } from '../../core/errors.js';
import type { KeyContext, Keyring, WrappedKey } from './keyring.js';

/**
 * The KEK is an AWS KMS key: data keys are wrapped by KMS Encrypt and unwrapped by Decrypt,
 * with an encryption context binding source and key id (KMS refuses to decrypt under another
 * context, and CloudTrail records it). Only the slice of the SDK client it uses is typed, so unit
 * tests pass a fake client at the SDK boundary.
 */
export interface KmsClientLike {
  send(command: EncryptCommand | DecryptCommand): Promise<{ CiphertextBlob?: Uint8Array; Plaintext?: Uint8Array; KeyId?: string }>;
}

/** `awskms://arn:aws:kms:<region>:<account>:key/<id>` → the ARN. */
export function parseKmsUrl(url: string): { arn: string; region: string | undefined } {
  const arn = url.replace(/^awskms:\/\//, '');
  const parts = arn.split(':');
  const region = parts[0] === 'arn' && parts[2] === 'kms' && parts[3] ? parts[3] : undefined;
  if (arn === '' || (parts[0] === 'arn' && region === undefined)) {
    throw new ChartlogError('config', `phi.keyring "${url}" does not name a KMS key`, {
      hint: 'use awskms://arn:aws:kms:<region>:<account>:key/<key-id> (or an alias ARN)',
    });
  }
  return { arn, region };
}

export class AwsKmsKeyring implements Keyring {
  readonly description: string;

  constructor(
    private readonly arn: string,
    private readonly client: KmsClientLike | (() => Promise<KmsClientLike>),
  ) {
    this.description = `AWS KMS key ${arn}`;
  }

  /** A keyring on a real KMS client in the key's region (credentials from the usual AWS chain). */
  static fromUrl(url: string): AwsKmsKeyring {
    const { arn, region } = parseKmsUrl(url);
    // The SDK is loaded on the first wrap or unwrap, not when the keyring is opened: commands that
    // open a keyring and never call KMS (restore with --keep-sealed of an old archive) skip its load.
    let client: Promise<KmsClientLike> | undefined;
    return new AwsKmsKeyring(arn, () => (client ??= import('@aws-sdk/client-kms').then(({ KMSClient }) => new KMSClient(region ? { region } : {}))));
  }

  async wrapKey(dek: Uint8Array, context: KeyContext): Promise<WrappedKey> {
    const out = await this.call(
      async () => {
        const [client, { EncryptCommand }] = await Promise.all([this.kms(), import('@aws-sdk/client-kms')]);
        return client.send(new EncryptCommand({ KeyId: this.arn, Plaintext: dek, EncryptionContext: encryptionContext(context) }));
      },
      context,
      'wrap',
    );
    if (!out.CiphertextBlob) throw new ChartlogError('internal', `KMS Encrypt returned no ciphertext for data key ${context.keyId}`);
    return { provider: 'awskms', kekId: this.arn, ciphertext: Buffer.from(out.CiphertextBlob).toString('base64') };
  }

  async unwrapKey(wrapped: WrappedKey, context: KeyContext): Promise<Uint8Array> {
    if (wrapped.provider !== 'awskms') {
      throw new ChartlogError('auth', `data key ${context.keyId} was wrapped by a ${wrapped.provider} keyring, not AWS KMS`, {
        hint: 'configure phi.keyring with the keyring that wrapped it',
      });
    }
    const out = await this.call(
      async () => {
        const [client, { DecryptCommand }] = await Promise.all([this.kms(), import('@aws-sdk/client-kms')]);
        return client.send(
          new DecryptCommand({
            KeyId: wrapped.kekId,
            CiphertextBlob: Buffer.from(wrapped.ciphertext, 'base64'),
            EncryptionContext: encryptionContext(context),
          }),
        );
      },
      context,
      'unwrap',
    );
    if (!out.Plaintext || out.Plaintext.length !== 32) {
      throw new ChartlogError('integrity', `KMS returned no 256-bit data key for ${context.keyId}`, {
        hint: 'the wrapped key object is damaged; restore keys/ from an intact copy',
      });
    }
    return new Uint8Array(out.Plaintext);
  }

  private async kms(): Promise<KmsClientLike> {
    return typeof this.client === 'function' ? this.client() : this.client;
  }

  private async call<T>(fn: () => Promise<T>, context: KeyContext, what: 'wrap' | 'unwrap'): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw kmsError(err, `KMS could not ${what} data key ${context.keyId} of source ${context.source} with ${this.arn}`);
    }
  }
}

function encryptionContext(context: KeyContext): Record<string, string> {
  return { 'chartlog:source': context.source, 'chartlog:keyId': context.keyId };
}

/** AWS error names → our codes; the SDK's message is kept (it names keys and ARNs, never key material). */
function kmsError(err: unknown, message: string): ChartlogError {
  const name = err instanceof Error ? err.name : 'Error';
  const detail = err instanceof Error ? err.message : String(err);
  switch (name) {
    case 'AccessDeniedException':
    case 'UnrecognizedClientException':
    case 'InvalidSignatureException':
    case 'ExpiredTokenException':
      return new ChartlogError('auth', `${message}: ${name}`, { hint: 'grant kms:Encrypt and kms:Decrypt on the key to the credentials chartlog uses' });
    case 'InvalidCiphertextException':
    case 'IncorrectKeyException':
      return new ChartlogError('integrity', `${message}: ${name}`, { hint: 'the wrapped key object is damaged or belongs to another KMS key' });
    case 'NotFoundException':
    case 'DisabledException':
    case 'KMSInvalidStateException':
      return new ChartlogError('config', `${message}: ${name} (${detail})`, { hint: 'check that phi.keyring names an enabled KMS key' });
    case 'ThrottlingException':
    case 'KMSInternalException':
    case 'DependencyTimeoutException':
      return new ChartlogError('connection', `${message}: ${name}`, { retriable: true });
    default:
      return new ChartlogError('connection', `${message}: ${name} (${detail})`, { retriable: true, hint: 'check network access to AWS KMS' });
  }
}
