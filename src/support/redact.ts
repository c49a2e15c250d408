/** Replaces the password in an AMQP/HTTP URL with `***`, so it can go into a log line or an error. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password !== '') u.password = '***';
    return u.toString();
  } catch {
    // Not parseable: strip anything that looks like userinfo rather than risk printing a secret.
    // Greedy up to the last '@': at worst it hides too much, never a tail of the password.
    return url.replace(/\/\/.*@/, '//***@');
  }
}

/** Removes every occurrence of each secret from a text (e.g. an error message from a dependency). */
export function redactSecrets(text: string, secrets: readonly string[]): string {
  let out = text;
  for (const s of secrets) {
    if (s.length > 0) out = out.split(s).join('***');
  }
  return out;
}
