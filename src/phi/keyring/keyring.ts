/**
 * A key-encryption key (KEK) provider: wraps and unwraps data keys. Implementations: the local
 * keyring file (file-keyring.ts) and AWS KMS (aws-kms-keyring.ts); Vault transit would be one
 * more file. The KEK itself never leaves the provider and is never written to the object store.
 */
export interface Keyring {
  /** Where the KEK lives, for messages; never key material. */
  readonly description: string;
  /** Wraps a data key; `context` is bound to the wrapping (unwrapping needs the same). */
  wrapKey(dek: Uint8Array, context: KeyContext): Promise<WrappedKey>;
  /** The data key; ChartlogError('integrity') when the wrapping fails to authenticate, 'auth' when refused. */
  unwrapKey(wrapped: WrappedKey, context: KeyContext): Promise<Uint8Array>;
}

export interface KeyContext {
  /** Source name. */
  readonly source: string;
  /** The data key's id, 32 hex digits. */
  readonly keyId: string;
}

/** A wrapped data key as stored in `<source>/keys/<keyId>.json`. */
export interface WrappedKey {
  readonly provider: 'file' | 'awskms';
  /** Which KEK wrapped it: the file keyring's KEK id, or the KMS key ARN. */
  readonly kekId: string;
  /** The wrapped key, base64. */
  readonly ciphertext: string;
}
