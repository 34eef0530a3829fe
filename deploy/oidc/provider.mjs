// A real OpenID Connect provider (panva/oidc-provider) on loopback, for
// callgate's sign-in tests (tests/api/oidc.rs). deploy/local.sh installs its
// packages outside the clone and exports CALLGATE_OIDC_MODULES; each test
// starts its own provider:
//
//   node deploy/oidc/provider.mjs <config.json>
//
// config.json: { "port": 0 (any) or a port on 127.0.0.1,
//                "state": a folder where the private keys are kept between restarts,
//                "keys": [{ "kid": "...", "alg": "ES256" | "RS256" | "EdDSA" }, ...]  (all published),
//                "sign": the kid that signs the access tokens }
//
// A key named in "keys" is made once and kept in "state", so a restart with
// another list rotates the way a provider does: publish the next key beside
// the current one, sign with it, drop the old one. Users are clients (kept in
// "state" too, so they outlive a restart): a test
// registers one (`POST /reg`, open dynamic registration, with its `name`,
// `gender` and `roles`) and gets JWT access tokens (an hour long) for the
// audience "urn:callgate" by the client_credentials grant (`sub` = its
// client_id).
// `GET /test/fetches` says how often the key set (`/jwks`) and the discovery
// document were asked for. It prints `listening <port>` when it serves.

import { generateKeyPairSync } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { createServer } from 'node:http';

const modules = process.env.CALLGATE_OIDC_MODULES;
if (!modules) throw new Error('CALLGATE_OIDC_MODULES: the node_modules folder deploy/local.sh installed');
const { default: Provider } = await import(pathToFileURL(join(modules, 'oidc-provider', 'lib', 'index.js')));

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));
mkdirSync(config.state, { recursive: true });

const KINDS = {
  RS256: () => generateKeyPairSync('rsa', { modulusLength: 2048 }),
  ES256: () => generateKeyPairSync('ec', { namedCurve: 'P-256' }),
  EdDSA: () => generateKeyPairSync('ed25519'),
};

function privateJwk({ kid, alg }) {
  if (!/^[A-Za-z0-9_-]{1,64}$/.test(kid)) throw new Error(`kid ${kid}: letters, digits, - and _ only`);
  const file = join(config.state, `${kid}.json`);
  if (!existsSync(file)) {
    const make = KINDS[alg];
    if (!make) throw new Error(`alg ${alg}: one of ${Object.keys(KINDS).join(', ')}`);
    const jwk = { ...make().privateKey.export({ format: 'jwk' }), kid, alg, use: 'sig' };
    writeFileSync(file, JSON.stringify(jwk));
  }
  return JSON.parse(readFileSync(file, 'utf8'));
}

const keys = config.keys.map(privateJwk);

// The clients registered before a restart, as static clients.
const clientsFile = join(config.state, 'clients.json');
const KEPT = ['client_id', 'client_secret', 'grant_types', 'response_types', 'token_endpoint_auth_method', 'name', 'gender', 'roles'];
const clients = existsSync(clientsFile) ? JSON.parse(readFileSync(clientsFile, 'utf8')) : [];
const signer = keys.find((k) => k.kid === config.sign);
if (!signer) throw new Error(`sign: ${config.sign} is not in keys`);

// The port first, so that the issuer (which every token names) is known.
const server = createServer();
await new Promise((resolve) => server.listen(config.port ?? 0, '127.0.0.1', resolve));
const { port } = server.address();
const issuer = `http://127.0.0.1:${port}`;
const AUDIENCE = 'urn:callgate';

const provider = new Provider(issuer, {
  jwks: { keys },
  clients,
  clientDefaults: {
    grant_types: ['client_credentials'],
    response_types: [],
    token_endpoint_auth_method: 'client_secret_post',
    id_token_signed_response_alg: signer.alg,
  },
  enabledJWA: {
    idTokenSigningAlgValues: ['RS256', 'ES256', 'EdDSA'],
  },
  extraClientMetadata: {
    properties: ['name', 'gender', 'roles'],
    validator(ctx, key, value) {
      if (value === undefined) return;
      const ok = key === 'roles' ? Array.isArray(value) && value.every((r) => typeof r === 'string') : typeof value === 'string';
      if (!ok) throw new Error(`${key}: a string${key === 'roles' ? ' array' : ''}`);
    },
  },
  async extraTokenClaims(ctx, token) {
    const client = await ctx.oidc.provider.Client.find(token.clientId);
    const claims = {};
    for (const claim of ['name', 'gender', 'roles']) {
      if (client?.[claim] !== undefined) claims[claim] = client[claim];
    }
    return claims;
  },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    registration: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => AUDIENCE,
      useGrantedResource: () => true,
      getResourceServerInfo: () => ({
        scope: 'calls',
        audience: AUDIENCE,
        accessTokenFormat: 'jwt',
        accessTokenTTL: 3600,
        jwt: { sign: { alg: signer.alg, kid: signer.kid } },
      }),
    },
  },
  ttl: { ClientCredentials: 3600 },
  cookies: { keys: ['callgate-test-provider-cookie-key'] },
});

const fetches = { jwks: 0, discovery: 0 };
provider.use(async (ctx, next) => {
  if (ctx.method === 'GET' && ctx.path === '/jwks') fetches.jwks += 1;
  if (ctx.method === 'GET' && ctx.path === '/.well-known/openid-configuration') fetches.discovery += 1;
  await next();
  if (ctx.method === 'POST' && ctx.path === '/reg' && ctx.status === 201) {
    clients.push(Object.fromEntries(KEPT.filter((k) => ctx.body[k] !== undefined).map((k) => [k, ctx.body[k]])));
    writeFileSync(clientsFile, JSON.stringify(clients));
  }
});

const callback = provider.callback();
server.on('request', (req, res) => {
  if (req.method === 'GET' && req.url === '/test/fetches') {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify(fetches));
    return;
  }
  callback(req, res);
});

for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, () => process.exit(0));
console.log(`listening ${port}`);
