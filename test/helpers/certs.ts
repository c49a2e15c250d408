// Certificates a TLS test makes for itself with the `openssl` command, in a directory of its own:
// nothing here is trusted anywhere else. EC P-256 keys: quick to make.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';

/** Why the certificates cannot be made here (a message that says what to install), or undefined. */
export function opensslProblem(): string | undefined {
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' });
    return undefined;
  } catch {
    return 'The TLS tests make their certificates with the `openssl` command: on Debian/Ubuntu `sudo apt-get install openssl`.';
  }
}

/** A certificate, its key, and both files' paths. */
export interface Issued {
  certFile: string;
  keyFile: string;
  cert: string;
  key: string;
}

export interface TestCertificates {
  dir: string;
  /** The CA that signs the node's certificate and the client certificates. */
  ca: Issued;
  /** A CA nobody uses: trusting it instead of `ca` must fail. */
  otherCa: Issued;
  /** The node's certificate: CN and SAN `localhost`, SAN IP 127.0.0.1. */
  server: Issued;
  /** The same names, signed by `ca`, but expired yesterday. */
  expiredServer: Issued;
  /** CN = `clientUser` (the EXTERNAL login), signed by `ca`. */
  client: Issued;
  /** The same CN, signed by `otherCa`: the node does not trust it. */
  untrustedClient: Issued;
  /** CN = `stranger`, signed by `ca`: trusted, but no such user on the node. */
  strangerClient: Issued;
  /** `client`'s key again, encrypted (AES-256) with `passphrase`. */
  encryptedClientKey: string;
  /** `client`'s certificate and key in a PKCS#12 bundle, encrypted with `passphrase`. */
  clientPfx: Buffer;
  passphrase: string;
  clientUser: string;
}

function openssl(dir: string, args: string[]): void {
  execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
}

async function issued(dir: string, name: string): Promise<Issued> {
  const certFile = path.join(dir, `${name}.pem`);
  const keyFile = path.join(dir, `${name}.key`);
  return { certFile, keyFile, cert: await readFile(certFile, 'utf8'), key: await readFile(keyFile, 'utf8') };
}

const EC = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

function selfSignedCa(dir: string, name: string, cn: string): void {
  openssl(dir, ['req', '-x509', ...EC, '-keyout', `${name}.key`, '-out', `${name}.pem`, '-days', '30', '-subj', `/CN=${cn}`,
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
}

/** A key and certificate for `cn`, signed by the CA `caName`, valid for `days` (negative: expired). */
async function sign(dir: string, name: string, caName: string, cn: string, days: number, extensions: string[]): Promise<void> {
  openssl(dir, ['req', '-new', ...EC, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${cn}`]);
  await writeFile(path.join(dir, `${name}.ext`), extensions.join('\n') + '\n');
  // `-days -1` makes notAfter a day before notBefore (now): a certificate that expired yesterday.
  openssl(dir, ['x509', '-req', '-in', `${name}.csr`, '-CA', `${caName}.pem`, '-CAkey', `${caName}.key`, '-CAcreateserial',
    '-out', `${name}.pem`, '-days', String(days), '-extfile', `${name}.ext`]);
}

/**
 * Makes a CA, a second unknown CA, a server certificate for localhost / 127.0.0.1, an expired one,
 * client certificates for `clientUser` (one from each CA) and one for a stranger, in `dir` (created; readable by the
 * `rabbitmq` user, which runs the test node).
 */
export async function makeCertificates(dir: string, clientUser: string): Promise<TestCertificates> {
  await mkdir(dir, { recursive: true });
  await chmod(dir, 0o755);
  selfSignedCa(dir, 'ca', 'warren test CA');
  selfSignedCa(dir, 'other-ca', 'warren unknown CA');
  const serverExt = ['subjectAltName=DNS:localhost,IP:127.0.0.1', 'extendedKeyUsage=serverAuth', 'basicConstraints=CA:FALSE'];
  await sign(dir, 'server', 'ca', 'localhost', 30, serverExt);
  await sign(dir, 'expired-server', 'ca', 'localhost', -1, serverExt);
  const clientExt = ['extendedKeyUsage=clientAuth', 'basicConstraints=CA:FALSE'];
  await sign(dir, 'client', 'ca', clientUser, 30, clientExt);
  await sign(dir, 'untrusted-client', 'other-ca', clientUser, 30, clientExt);
  await sign(dir, 'stranger-client', 'ca', 'stranger', 30, clientExt);
  const passphrase = `key-pass-${randomBytes(6).toString('hex')}`;
  openssl(dir, ['pkey', '-in', 'client.key', '-out', 'client-encrypted.key', '-aes256', '-passout', `pass:${passphrase}`]);
  openssl(dir, ['pkcs12', '-export', '-in', 'client.pem', '-inkey', 'client.key', '-out', 'client.p12', '-passout', `pass:${passphrase}`]);
  // The node reads its files as the `rabbitmq` user; nothing here is a real secret.
  execFileSync('chmod', ['-R', 'a+rX', dir]);
  return {
    dir,
    ca: await issued(dir, 'ca'),
    otherCa: await issued(dir, 'other-ca'),
    server: await issued(dir, 'server'),
    expiredServer: await issued(dir, 'expired-server'),
    client: await issued(dir, 'client'),
    untrustedClient: await issued(dir, 'untrusted-client'),
    strangerClient: await issued(dir, 'stranger-client'),
    encryptedClientKey: await readFile(path.join(dir, 'client-encrypted.key'), 'utf8'),
    clientPfx: await readFile(path.join(dir, 'client.p12')),
    passphrase,
    clientUser,
  };
}
