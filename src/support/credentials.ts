import { readFile } from 'node:fs/promises';
import { CredentialsError } from './errors.js';

/**
 * Where a login comes from, instead of (or beside) the URL: each of the user name and the password
 * given as a value or as a file to read (a Kubernetes secret mounted as a file). Files are read
 * at each connection attempt, so a rotated secret is used from the next reconnect on.
 */
export interface Credentials {
  username?: string;
  password?: string;
  /** A file holding the user name; a trailing newline is dropped. */
  usernameFile?: string;
  /** A file holding the password; a trailing newline is dropped. */
  passwordFile?: string;
  /**
   * The SASL mechanism. 'PLAIN' (default): the user name and password. 'EXTERNAL': the client
   * certificate (`tls.cert`) names the user; needs amqps:// and the broker's
   * rabbitmq_auth_mechanism_ssl plugin, and takes no user name or password.
   */
  mechanism?: 'PLAIN' | 'EXTERNAL';
}

/** Credentials for the management HTTP API (basic auth): no SASL mechanism. */
export type ManagementCredentials = Omit<Credentials, 'mechanism'>;

/** Credentials as parsed (an absent field may be present as undefined). */
export type CredentialSource = { [K in keyof ManagementCredentials]?: string | undefined };

/** A user name and password, read. */
export interface Login {
  username: string;
  password: string;
}

/** The user name and password written in a URL, decoded; empty strings where there is none. */
export function userinfoOf(url: string): Login {
  try {
    const u = new URL(url);
    return { username: decoded(u.username), password: decoded(u.password) };
  } catch {
    return { username: '', password: '' };
  }
}

function decoded(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

/** `url` without user name and password: what is handed on when the login travels apart from it. */
export function withoutUserinfo(url: string): string {
  const u = new URL(url);
  u.username = '';
  u.password = '';
  return u.toString();
}

/**
 * Why `credentials` and the userinfo of `url` cannot be used together, if they cannot: each of the
 * user name and the password may come from one place only, and a password needs a user name.
 * `what` names the credentials option in the problems (e.g. 'credentials').
 */
export function credentialsProblems(credentials: CredentialSource, url: string, what: string, urlName: string): string[] {
  const problems: string[] = [];
  if (credentials.username !== undefined && credentials.usernameFile !== undefined) problems.push(`${what}: give username or usernameFile, not both`);
  if (credentials.password !== undefined && credentials.passwordFile !== undefined) problems.push(`${what}: give password or passwordFile, not both`);
  const inUrl = userinfoOf(url);
  const user = credentials.username !== undefined || credentials.usernameFile !== undefined;
  const password = credentials.password !== undefined || credentials.passwordFile !== undefined;
  if (user && inUrl.username !== '') {
    problems.push(`${what}: the user name is given twice, in ${what} and in ${urlName}: give it in one place (remove it from the URL, or from ${what})`);
  }
  if (password && inUrl.password !== '') {
    problems.push(`${what}: the password is given twice, in ${what} and in ${urlName}: give it in one place (remove it from the URL, or from ${what})`);
  }
  if (password && !user && inUrl.username === '') {
    problems.push(`${what}: a password is given without a user name: add ${what}.username (or usernameFile), or the user to ${urlName} (amqp://user@host)`);
  }
  return problems;
}

/**
 * The login for one connection attempt: `credentials` (files read now), with what they leave out
 * taken from the userinfo of `url`. Rejects with CredentialsError naming a file that cannot be
 * read or is empty — never its contents.
 */
export async function readLogin(credentials: CredentialSource, url: string): Promise<Login> {
  const inUrl = userinfoOf(url);
  const username = credentials.username ?? (credentials.usernameFile !== undefined ? await readSecretFile(credentials.usernameFile, 'user name') : inUrl.username);
  const password = credentials.password ?? (credentials.passwordFile !== undefined ? await readSecretFile(credentials.passwordFile, 'password') : inUrl.password);
  return { username, password };
}

/** A secret file's contents without the trailing newline(s) an editor or `echo` leaves. */
async function readSecretFile(path: string, what: 'user name' | 'password'): Promise<string> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    // Node's own text (e.g. ENOENT, EACCES) names the path and the reason, never the contents.
    const reason = err instanceof Error && 'code' in err && typeof err.code === 'string' ? err.code : 'unreadable';
    // A missing "file" with no directory in its name may be the secret itself, passed where its
    // path belongs (passwordFile: process.env.RABBITMQ_PASSWORD): not shown, not in `path` either.
    const maybeSecret = reason === 'ENOENT' && !/[/\\]/.test(path);
    const shown = maybeSecret ? `given (a name with no '/', ${path.length} characters, not shown in case it is the ${what} itself)` : `'${path}'`;
    throw new CredentialsError(
      `Cannot read the ${what} file ${shown} (${reason}). Check the path and that this process may read it ` +
        `(a Kubernetes secret is mounted as a directory of files, one per key)${maybeSecret ? `; give the ${what} file's path, or the ${what} itself as ${what === 'password' ? 'password' : 'username'}` : ''}.`,
      { path: maybeSecret ? '***' : path },
    );
  }
  const value = text.replace(/[\r\n]+$/, '');
  if (value === '') throw new CredentialsError(`The ${what} file '${path}' is empty: write the ${what} into it.`, { path });
  return value;
}
