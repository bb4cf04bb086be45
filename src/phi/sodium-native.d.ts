/**
 * The slice of sodium-native (libsodium bindings, no types of its own) chartlog uses: the
 * XChaCha20-Poly1305 AEAD (src/phi/sealer.ts). Buffers are Uint8Arrays; lengths are checked by
 * the binding, which throws on a wrong size.
 */
declare module 'sodium-native' {
  /** Writes ciphertext ‖ tag (plaintext length + 16 bytes) into `out`; returns its length. */
  export function crypto_aead_xchacha20poly1305_ietf_encrypt(out: Uint8Array, plaintext: Uint8Array, ad: Uint8Array | null, nsec: null, npub: Uint8Array, key: Uint8Array): number;
  /** Writes the plaintext into `out` and returns its length; throws when authentication fails. */
  export function crypto_aead_xchacha20poly1305_ietf_decrypt(out: Uint8Array, nsec: null, ciphertext: Uint8Array, ad: Uint8Array | null, npub: Uint8Array, key: Uint8Array): number;
  export const crypto_aead_xchacha20poly1305_ietf_ABYTES: number;
  export const crypto_aead_xchacha20poly1305_ietf_NPUBBYTES: number;
  export const crypto_aead_xchacha20poly1305_ietf_KEYBYTES: number;
  const sodium: {
    crypto_aead_xchacha20poly1305_ietf_encrypt: typeof crypto_aead_xchacha20poly1305_ietf_encrypt;
    crypto_aead_xchacha20poly1305_ietf_decrypt: typeof crypto_aead_xchacha20poly1305_ietf_decrypt;
    crypto_aead_xchacha20poly1305_ietf_ABYTES: number;
    crypto_aead_xchacha20poly1305_ietf_NPUBBYTES: number;
    crypto_aead_xchacha20poly1305_ietf_KEYBYTES: number;
  };
  export default sodium;
}
