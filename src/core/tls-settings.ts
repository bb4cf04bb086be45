/**
 * TLS for a connection to a source, as every connector reads it. The configuration schema
 * (src/config/schema.ts) produces exactly this shape; connectors depend on this type, not on
 * the schema, so they import only core.
 */
export interface TlsSettings {
  /** disable: plaintext; require: TLS without certificate checks; verify-full: certificate and host name checked. */
  readonly mode: 'disable' | 'require' | 'verify-full';
  /** Path to a PEM file with the CA certificate(s) to trust. */
  readonly ca?: string;
  /** Client certificate and key (PEM paths) for mutual TLS. */
  readonly cert?: string;
  readonly key?: string;
}
