import type { Logger } from './logger.js';

/**
 * TLS for a connection to a source, as every connector reads it. The configuration schema
 * (src/config/schema.ts) produces exactly this shape; connectors depend on this type, not on
 * the schema, so they import only core.
 */
export interface TlsSettings {
  /**
   * prefer (the default for sources): TLS when the server offers it (no certificate check),
   * plaintext with a loud warning when it does not; disable: plaintext; require: TLS without
   * certificate checks; verify-full: certificate and host name checked.
   */
  readonly mode: 'prefer' | 'disable' | 'require' | 'verify-full';
  /** Path to a PEM file with the CA certificate(s) to trust. */
  readonly ca?: string;
  /** Client certificate and key (PEM paths) for mutual TLS. */
  readonly cert?: string;
  readonly key?: string;
}

/**
 * Whether a connection attempt uses TLS, and the `prefer` fallback, for every connector.
 *
 * The change stream carries PHI before it is sealed, so a source connection defaults to
 * `prefer`: TLS first; plaintext only when the server answers that it does not offer TLS at all
 * (PostgreSQL's 'N' to SSLRequest, MySQL's handshake without the SSL capability) — never after
 * a failed TLS handshake or a refused certificate, which stay errors. Neither node-postgres nor
 * mysql2 has such a mode (node-postgres issue #2720; mysql2 fails with
 * HANDSHAKE_NO_SSL_SUPPORT), so the connector retries the connection without TLS itself.
 *
 * A plaintext connection in `prefer` mode is logged as a warning naming the source, once per
 * connector (one per `chartlog run` and source), and again whenever plaintext follows a TLS
 * connection (the server stopped offering TLS: a downgrade). `tls.mode: disable` silences it;
 * `require` or `verify-full` refuse plaintext.
 */
export class TlsPreference {
  private warned = false;
  private sawTls = false;
  /** Whether the last connection made through `connect` used TLS (what related connections should use). */
  lastUsedTls: boolean;

  constructor(
    private readonly source: string,
    readonly mode: TlsSettings['mode'],
    private readonly log: Logger,
  ) {
    this.lastUsedTls = mode !== 'disable';
  }

  /**
   * Connects with `attempt(useTls)`. In `prefer` mode a TLS attempt refused because the server
   * does not offer TLS (`serverHasNoTls(err)`) is followed by a plaintext attempt.
   */
  async connect<T>(attempt: (useTls: boolean) => Promise<T>, serverHasNoTls: (err: unknown) => boolean): Promise<T> {
    if (this.mode !== 'prefer') return attempt(this.mode !== 'disable');
    try {
      const c = await attempt(true);
      this.lastUsedTls = true;
      this.sawTls = true;
      return c;
    } catch (err) {
      if (!serverHasNoTls(err)) throw err;
    }
    const c = await attempt(false);
    this.lastUsedTls = false;
    this.warnPlaintext();
    return c;
  }

  private warnPlaintext(): void {
    if (this.warned && !this.sawTls) return;
    this.warned = true;
    const downgrade = this.sawTls;
    this.sawTls = false;
    this.log.warn(
      { source: this.source, tlsMode: 'prefer', encrypted: false, ...(downgrade ? { downgrade: true } : {}) },
      `source ${this.source}: the database server ${downgrade ? 'no longer offers' : 'does not offer'} TLS, so the change stream — PHI before sealing included — and the login travel UNENCRYPTED. ` +
        `Enable TLS on the server and set sources[].tls.mode: verify-full (or require) to refuse plaintext; set tls.mode: disable only to accept plaintext on purpose (it silences this warning)`,
    );
  }
}
