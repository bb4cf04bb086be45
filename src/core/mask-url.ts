/**
 * A connection URL with its password replaced by ****, for messages, logs and printed
 * configuration. Written for what people really type, not for valid URLs only: a password may
 * hold unencoded '@', '/', ':' or '#', so the credentials are everything between '://' and the
 * LAST '@' (a host never contains one); that can mask more than the password, never less.
 * Anything without credentials is returned unchanged.
 */
export function maskUrl(url: string): string {
  const scheme = /^[a-z][a-z0-9+.-]*:\/\//i.exec(url);
  if (!scheme) return url;
  const rest = url.slice(scheme[0].length);
  const at = rest.lastIndexOf('@');
  if (at < 0) return url;
  const colon = rest.indexOf(':');
  // A user name only ("mysql://root@h/db"): nothing secret to hide.
  if (colon < 0 || colon > at) return url;
  return `${scheme[0]}${rest.slice(0, colon)}:****@${rest.slice(at + 1)}`;
}
