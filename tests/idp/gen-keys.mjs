// Regenerates the committed test keys under ./keys. Only needed if a key must change:
// the committed files are what tests rely on, so running this invalidates nothing but
// any token or fixture minted with the old keys.
//
//   node gen-keys.mjs            # writes every key that does not exist yet
//   node gen-keys.mjs --force    # overwrites them all
//
// For each key NAME it writes:
//   keys/NAME.json     {"keys":[private JWK]}  (the IDP_JWKS_FILE format; for m2m-jwt the client's key)
//   keys/NAME.pem      PKCS#8 private key      (jsonwebtoken EncodingKey::from_{rsa,ec}_pem)
//   keys/NAME.pub.pem  SPKI public key         (jsonwebtoken DecodingKey::from_{rsa,ec}_pem)
import { generateKeyPairSync } from 'node:crypto';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const dir = join(dirname(fileURLToPath(import.meta.url)), 'keys');
const force = process.argv.includes('--force');

const specs = [
  { name: 'rsa1', kid: 'test-rsa-1', alg: 'RS256', type: 'rsa' },
  { name: 'rsa2', kid: 'test-rsa-2', alg: 'RS256', type: 'rsa' },
  { name: 'ec1', kid: 'test-ec-1', alg: 'ES256', type: 'ec' },
  { name: 'm2m-jwt', kid: 'm2m-jwt-1', alg: 'RS256', type: 'rsa' },
];

mkdirSync(dir, { recursive: true });
for (const { name, kid, alg, type } of specs) {
  const jsonPath = join(dir, `${name}.json`);
  if (existsSync(jsonPath) && !force) {
    process.stderr.write(`keep ${jsonPath}\n`);
    continue;
  }
  const { privateKey, publicKey } = type === 'rsa'
    ? generateKeyPairSync('rsa', { modulusLength: 2048 })
    : generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const jwk = { ...privateKey.export({ format: 'jwk' }), kid, alg, use: 'sig' };
  writeFileSync(jsonPath, `${JSON.stringify({ keys: [jwk] }, null, 2)}\n`);
  writeFileSync(join(dir, `${name}.pem`), privateKey.export({ format: 'pem', type: 'pkcs8' }));
  writeFileSync(join(dir, `${name}.pub.pem`), publicKey.export({ format: 'pem', type: 'spki' }));
  process.stderr.write(`wrote ${jsonPath} (kid ${kid})\n`);
}
