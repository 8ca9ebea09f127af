// Test identity provider for tollgate's integration tests: panva's oidc-provider (a certified
// OpenID Provider) on 127.0.0.1, configured with fixed clients and keys, plus a few test-only
// endpoints under /__test/ (request counters, injected delays and failures).
//
// stdout carries exactly one line, `IDP_READY {"issuer":"http://127.0.0.1:PORT"}`, once the
// provider is listening; everything else goes to stderr. See README.md for the knobs.
import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

// oidc-provider prints its NOTICE lines with console.info, i.e. to stdout, and stdout is reserved
// for the ready line. Route every console method to stderr *before* the library is loaded, which
// is why it is imported dynamically below rather than with a static import.
for (const method of ['log', 'info', 'debug']) {
  console[method] = (...args) => console.error(...args);
}
const { default: Provider, errors } = await import('oidc-provider');

const here = dirname(fileURLToPath(import.meta.url));
const env = process.env;

function list(value, fallback) {
  return (value ?? fallback).split(',').map((s) => s.trim()).filter(Boolean);
}

function positiveInt(name, fallback) {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isSafeInteger(n) || n <= 0) throw new Error(`${name} must be a positive integer, got ${raw}`);
  return n;
}

function readJson(path, what) {
  try {
    return JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new Error(`cannot read ${what} from ${path}: ${err.message}`);
  }
}

// ---------------------------------------------------------------------------------------------
// Settings
// ---------------------------------------------------------------------------------------------
const PORT = Number(env.IDP_PORT ?? 0);
const JWKS_FILE = env.IDP_JWKS_FILE || join(here, 'keys', 'rsa1.json');
const AT_TTL = positiveInt('IDP_AT_TTL', 300);
// Resource indicators the IdP accepts; `*` accepts any absolute URI.
const RESOURCES = new Set(list(env.IDP_RESOURCES, 'https://api.tollgate.test'));
// Resource used when a request names none. Unset by default, so that such requests get
// opaque tokens (the introspection path); set it to make every token a JWT for that audience.
const DEFAULT_RESOURCE = env.IDP_DEFAULT_RESOURCE || undefined;
const RESOURCE_SCOPE = env.IDP_RESOURCE_SCOPES || 'api:read api:write';
// Clients allowed to introspect (and revoke) tokens issued to other clients.
const INTROSPECTORS = new Set(list(env.IDP_INTROSPECTORS, 'gateway'));
// Clients treated as first-party: the consent screen is skipped, only login is asked.
const AUTO_CONSENT = new Set(list(env.IDP_AUTO_CONSENT, 'web'));
// Optional per-account claim overrides: {"alice": {"groups": ["admins"], "name": "Alice"}}.
const ACCOUNTS = env.IDP_ACCOUNTS ? JSON.parse(env.IDP_ACCOUNTS) : {};
const EXTRA_CLIENTS = env.IDP_EXTRA_CLIENTS ? JSON.parse(env.IDP_EXTRA_CLIENTS) : [];
const LOG_REQUESTS = env.IDP_LOG_REQUESTS !== '0';

if (!Number.isInteger(PORT) || PORT < 0 || PORT > 65535) throw new Error(`IDP_PORT must be 0..65535, got ${env.IDP_PORT}`);
if (!Array.isArray(EXTRA_CLIENTS)) throw new Error('IDP_EXTRA_CLIENTS must be a JSON array of client metadata');

// ---------------------------------------------------------------------------------------------
// Keys
// ---------------------------------------------------------------------------------------------
const jwks = readJson(JWKS_FILE, 'IDP_JWKS_FILE');
if (!Array.isArray(jwks.keys) || jwks.keys.length === 0) throw new Error(`${JWKS_FILE} has no "keys"`);

// Everything the IdP signs (ID tokens, JWT access tokens) uses the first key's algorithm, so a
// key file with only an EC key yields ES256 tokens without further configuration.
function algOf(jwk) {
  if (jwk.alg) return jwk.alg;
  if (jwk.kty === 'RSA') return 'RS256';
  if (jwk.kty === 'EC') return { 'P-256': 'ES256', 'P-384': 'ES384', 'P-521': 'ES512' }[jwk.crv];
  if (jwk.kty === 'OKP') return 'EdDSA';
  throw new Error(`unsupported key type ${jwk.kty}`);
}
const SIGNING_ALG = algOf(jwks.keys[0]);

function publicJwk(jwk) {
  const { d, p, q, dp, dq, qi, ...pub } = jwk; // eslint-disable-line no-unused-vars
  return pub;
}
const m2mJwtKey = publicJwk(readJson(join(here, 'keys', 'm2m-jwt.json'), 'the m2m-jwt client key').keys[0]);

// ---------------------------------------------------------------------------------------------
// Clients
// ---------------------------------------------------------------------------------------------
const m2m = {
  grant_types: ['client_credentials'],
  response_types: [],
  redirect_uris: [],
  scope: RESOURCE_SCOPE,
};
const webBackchannel = env.IDP_WEB_BACKCHANNEL_URI
  ? { backchannel_logout_uri: env.IDP_WEB_BACKCHANNEL_URI, backchannel_logout_session_required: true }
  : {};
const clients = [
  { ...m2m, client_id: 'm2m', client_secret: 'm2m-secret', token_endpoint_auth_method: 'client_secret_basic' },
  { ...m2m, client_id: 'm2m-post', client_secret: 'm2m-post-secret', token_endpoint_auth_method: 'client_secret_post' },
  {
    ...m2m,
    client_id: 'm2m-jwt',
    token_endpoint_auth_method: 'private_key_jwt',
    token_endpoint_auth_signing_alg: 'RS256',
    jwks: { keys: [m2mJwtKey] },
  },
  // The gateway's own (resource-server) client: introspects and revokes, may also mint tokens.
  { ...m2m, client_id: 'gateway', client_secret: 'gateway-secret', token_endpoint_auth_method: 'client_secret_basic' },
  {
    client_id: 'web',
    client_secret: 'web-secret',
    token_endpoint_auth_method: 'client_secret_basic',
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    redirect_uris: list(env.IDP_WEB_REDIRECT_URIS, 'http://127.0.0.1:8080/oauth2/callback'),
    post_logout_redirect_uris: list(env.IDP_WEB_POST_LOGOUT_URIS, 'http://127.0.0.1:8080/'),
    id_token_signed_response_alg: SIGNING_ALG,
    scope: `openid offline_access profile email groups ${RESOURCE_SCOPE}`,
    ...webBackchannel,
  },
  ...EXTRA_CLIENTS,
];

// ---------------------------------------------------------------------------------------------
// Accounts: any login name is an account. Names starting with "admin" are also in "admins".
// ---------------------------------------------------------------------------------------------
function accountClaims(sub) {
  return {
    sub,
    email: `${sub}@example.com`,
    email_verified: true,
    preferred_username: sub,
    name: sub.charAt(0).toUpperCase() + sub.slice(1),
    groups: sub.startsWith('admin') ? ['staff', 'admins'] : ['staff'],
    ...ACCOUNTS[sub],
  };
}

// ---------------------------------------------------------------------------------------------
// Provider configuration
// ---------------------------------------------------------------------------------------------
const configuration = {
  jwks,
  clients,
  // Fixed, so cookies signed before a restart on the same port still verify (their sessions are
  // gone with the in-memory store, so the browser is simply logged out, not rejected as tampered).
  cookies: { keys: ['tollgate-test-idp-cookie-key-1'] },
  routes: {
    // One path segment each, so a counter key is simply the path without its leading slash.
    authorization: '/auth',
    token: '/token',
    jwks: '/jwks',
    userinfo: '/userinfo',
    end_session: '/end_session',
    introspection: '/introspection',
    revocation: '/revocation',
    registration: '/reg',
    backchannel_authentication: '/backchannel',
    code_verification: '/device',
    device_authorization: '/device_auth',
    pushed_authorization_request: '/par',
  },
  responseTypes: ['code'], // authorization-code flow only: no implicit or hybrid
  scopes: ['openid', 'offline_access', 'profile', 'email', 'groups', ...RESOURCE_SCOPE.split(' ')],
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name', 'preferred_username'],
    groups: ['groups'],
  },
  // Put scope-requested claims (email, groups, ...) into the ID token as well, not only into
  // userinfo: gateways commonly read identity from the ID token alone.
  conformIdTokenClaims: false,
  async findAccount(_ctx, sub) {
    return { accountId: sub, claims: async () => accountClaims(sub) };
  },
  // User-bound access tokens (JWT or introspected) carry the identity claims the gateway maps to
  // X-Forwarded-* headers; client-credentials tokens carry none.
  async extraTokenClaims(_ctx, token) {
    if (!token.accountId) return undefined;
    const { email, preferred_username, groups } = accountClaims(token.accountId);
    return { email, preferred_username, groups };
  },
  features: {
    devInteractions: { enabled: true },
    clientCredentials: { enabled: true },
    introspection: {
      enabled: true,
      async allowedPolicy(ctx, client, token) {
        return token.clientId === client.clientId || INTROSPECTORS.has(client.clientId);
      },
    },
    revocation: { enabled: true },
    // ---- mTLS (RFC 8705): certificate-bound access tokens (tests/mtls_bound.rs) ----------------
    // A client registered with `tls_client_certificate_bound_access_tokens: true` gets tokens with
    // cnf["x5t#S256"] of the certificate it presented on the HTTPS listener (IDP_MTLS_CERT_FILE);
    // over plain HTTP it has none and its token request fails (invalid_grant).
    mTLS: {
      enabled: true,
      certificateBoundAccessTokens: true,
      getCertificate(ctx) {
        return ctx.socket?.getPeerX509Certificate?.() ?? undefined;
      },
    },
    // ---- end mTLS -------------------------------------------------------------------------------
    // --- DPoP (RFC 9449) -----------------------------------------------------------------------
    // A token request with a DPoP proof gets a token bound to the proof's key: `cnf.jkt` in JWT
    // access tokens and in introspection answers. Without a proof, tokens stay bearer tokens.
    dPoP: { enabled: true },
    // --- end DPoP --------------------------------------------------------------------------------
    rpInitiatedLogout: { enabled: true },
    backchannelLogout: { enabled: true },
    resourceIndicators: {
      enabled: true,
      async defaultResource(_ctx, _client, oneOf) {
        // oneOf: several resources were granted and one must be picked for this token request.
        if (oneOf) return oneOf[0];
        return DEFAULT_RESOURCE;
      },
      async useGrantedResource() {
        return true;
      },
      async getResourceServerInfo(_ctx, resource) {
        if (!RESOURCES.has('*') && !RESOURCES.has(resource)) throw new errors.InvalidTarget();
        return {
          scope: RESOURCE_SCOPE,
          audience: resource,
          accessTokenTTL: AT_TTL,
          accessTokenFormat: 'jwt', // RFC 9068: header typ "at+jwt"
          jwt: { sign: { alg: SIGNING_ALG } },
        };
      },
    },
  },
  // The provider only advertises algorithms it holds a key for, so clients (IDP_EXTRA_CLIENTS
  // included) default to the key file's algorithm rather than the library's RS256.
  clientDefaults: {
    grant_types: ['authorization_code'],
    id_token_signed_response_alg: SIGNING_ALG,
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  },
  pkce: { methods: ['S256'], required: () => true },
  // Refresh tokens for every client allowed the refresh_token grant (the web client), with or
  // without offline_access, rotated on every use.
  issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token'),
  rotateRefreshToken: true,
  async loadExistingGrant(ctx) {
    const { client, session, result, provider } = ctx.oidc;
    const grantId = result?.consent?.grantId || session.grantIdFor(client.clientId);
    const existing = grantId ? await provider.Grant.find(grantId) : undefined;
    if (!AUTO_CONSENT.has(client.clientId)) return existing;
    // First-party client: grant whatever was asked for, so a login needs no consent step.
    const grant = existing ?? new provider.Grant({ clientId: client.clientId, accountId: session.accountId });
    grant.addOIDCScope([...ctx.oidc.requestParamOIDCScopes].join(' '));
    for (const [indicator, rs] of Object.entries(ctx.oidc.resourceServers ?? {})) {
      grant.addResourceScope(indicator, rs.scope);
    }
    await grant.save();
    return grant;
  },
  ttl: {
    AccessToken: AT_TTL,
    ClientCredentials: AT_TTL,
    AuthorizationCode: 60,
    IdToken: 3600,
    RefreshToken: 24 * 3600,
    Interaction: 3600,
    Session: 24 * 3600,
    Grant: 24 * 3600,
  },
  clientBasedCORS: () => true,
  // DPoP (RFC 9449): proof algorithms the token endpoint accepts (the library's default is
  // ES256 and EdDSA only; the gateway's tests also bind tokens to RSA keys).
  enabledJWA: { dPoPSigningAlgValues: ['ES256', 'EdDSA', 'RS256', 'PS256'] },
};

// ---------------------------------------------------------------------------------------------
// Test endpoints: counters, delays, failures
// ---------------------------------------------------------------------------------------------
const counters = {};
const delays = {}; // endpoint -> ms
const failures = {}; // endpoint -> HTTP status

// "/token" -> "token", "/interaction/abc/login" -> "interaction",
// "/.well-known/openid-configuration" -> ".well-known/openid-configuration".
function endpointOf(pathname) {
  if (pathname.startsWith('/.well-known/')) return pathname.slice(1);
  return pathname.split('/')[1] || '';
}

function sendJson(res, status, body) {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

function testEndpoint(req, res, url) {
  const route = `${req.method} ${url.pathname}`;
  const endpoint = url.searchParams.get('endpoint');
  switch (route) {
    case 'GET /__test/counters':
      return sendJson(res, 200, counters);
    case 'POST /__test/reset':
      for (const key of Object.keys(counters)) delete counters[key];
      return sendJson(res, 200, counters);
    case 'POST /__test/delay': {
      const ms = Number(url.searchParams.get('ms') ?? 0);
      if (!endpoint || !(ms >= 0)) return sendJson(res, 400, { error: 'need endpoint and ms >= 0' });
      if (ms === 0) delete delays[endpoint]; else delays[endpoint] = ms;
      return sendJson(res, 200, delays);
    }
    case 'POST /__test/fail': {
      const status = Number(url.searchParams.get('status') ?? 0);
      if (!endpoint || !(status === 0 || (status >= 400 && status <= 599))) {
        return sendJson(res, 400, { error: 'need endpoint and status 0 (clear) or 400..599' });
      }
      if (status === 0) delete failures[endpoint]; else failures[endpoint] = status;
      return sendJson(res, 200, failures);
    }
    default:
      return sendJson(res, 404, { error: `no test endpoint ${route}` });
  }
}

// ---------------------------------------------------------------------------------------------
// Token exchange (RFC 8693), for tests/token_exchange.rs: a grant handler registered on the
// provider. The subject token must be a JWT access token this provider signed (checked with its
// own keys: signature, issuer, expiry); the audience (`audience`, else `resource`) must be in
// IDP_EXCHANGE_AUDIENCES. The answer is a JWT access token for that audience with
// `sub` = the subject's, `act` = {"sub": the client} (or the actor token's client), lifetime
// IDP_EXCHANGE_TTL. Refusals: invalid_grant (bad subject or actor token), invalid_target
// (audience not allowed), invalid_request (missing or unsupported parameters). Counted in
// /__test/counters as `token_exchange` (every request the handler sees), `token_exchange_actor`
// (those with a valid actor token) and `token_exchange_issued`. The client `exchanger` (secret `exchanger-secret`, basic auth) may
// use it, and client credentials for its actor token.
// ---------------------------------------------------------------------------------------------
const { jwtVerify, createLocalJWKSet, importJWK, SignJWT } = await import('jose');
const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';
const JWT_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:jwt';
const EXCHANGE_AUDIENCES = new Set(list(env.IDP_EXCHANGE_AUDIENCES, 'https://orders.tollgate.test'));
const EXCHANGE_TTL = positiveInt('IDP_EXCHANGE_TTL', 300);
const exchangeVerifyKeys = createLocalJWKSet({ keys: jwks.keys.map(publicJwk) });
const exchangeSigningKey = await importJWK(jwks.keys[0], SIGNING_ALG);

clients.push({
  client_id: 'exchanger',
  client_secret: 'exchanger-secret',
  token_endpoint_auth_method: 'client_secret_basic',
  grant_types: [TOKEN_EXCHANGE, 'client_credentials'],
  response_types: [],
  redirect_uris: [],
  scope: RESOURCE_SCOPE,
});

function exchangeCount(name) {
  counters[name] = (counters[name] ?? 0) + 1;
}

// The actor token's client: its own client-credentials token (opaque, looked up) or a JWT
// this provider signed; either way it must belong to the client making the request.
async function exchangeActor(ctx, issuer) {
  const { params, client, provider } = ctx.oidc;
  if (!params.actor_token) {
    if (params.actor_token_type) throw new errors.InvalidRequest('actor_token_type without actor_token');
    return client.clientId;
  }
  if (params.actor_token_type !== ACCESS_TOKEN_TYPE) throw new errors.InvalidRequest('unsupported actor_token_type');
  let actor;
  if (params.actor_token.includes('.')) {
    try {
      const { payload } = await jwtVerify(params.actor_token, exchangeVerifyKeys, { issuer });
      actor = payload.client_id ?? payload.sub;
    } catch (err) {
      throw new errors.InvalidGrant(`actor_token: ${err.message}`);
    }
  } else {
    const found = await provider.ClientCredentials.find(params.actor_token);
    if (!found || found.isExpired) throw new errors.InvalidGrant('actor_token is unknown or expired');
    actor = found.clientId;
  }
  if (actor !== client.clientId) throw new errors.InvalidGrant('actor_token belongs to another client');
  exchangeCount('token_exchange_actor');
  return actor;
}

async function tokenExchangeHandler(ctx, next) {
  const { params, client } = ctx.oidc;
  const issuer = ctx.oidc.issuer;
  exchangeCount('token_exchange');
  if (!params.subject_token) throw new errors.InvalidRequest('missing subject_token');
  if (params.subject_token_type !== ACCESS_TOKEN_TYPE && params.subject_token_type !== JWT_TOKEN_TYPE) {
    throw new errors.InvalidRequest('unsupported subject_token_type');
  }
  const requested = params.requested_token_type ?? ACCESS_TOKEN_TYPE;
  if (requested !== ACCESS_TOKEN_TYPE && requested !== JWT_TOKEN_TYPE) {
    throw new errors.InvalidRequest('unsupported requested_token_type');
  }
  let subject;
  try {
    ({ payload: subject } = await jwtVerify(params.subject_token, exchangeVerifyKeys, { issuer }));
  } catch (err) {
    throw new errors.InvalidGrant(`subject_token: ${err.message}`);
  }
  const audience = params.audience ?? params.resource;
  if (!audience) throw new errors.InvalidTarget('no audience or resource named');
  if (!EXCHANGE_AUDIENCES.has(audience)) throw new errors.InvalidTarget(`audience ${audience} is not allowed`);
  const actor = await exchangeActor(ctx, issuer);
  const scope = params.scope ?? subject.scope;
  const claims = { client_id: client.clientId, act: { sub: actor }, ...(scope ? { scope } : {}) };
  const accessToken = await new SignJWT(claims)
    .setProtectedHeader({ alg: SIGNING_ALG, typ: 'at+jwt', kid: jwks.keys[0].kid })
    .setIssuer(issuer)
    .setSubject(subject.sub)
    .setAudience(audience)
    .setIssuedAt()
    .setExpirationTime(`${EXCHANGE_TTL}s`)
    .setJti(crypto.randomUUID())
    .sign(exchangeSigningKey);
  exchangeCount('token_exchange_issued');
  ctx.body = {
    access_token: accessToken,
    issued_token_type: requested,
    token_type: 'Bearer',
    expires_in: EXCHANGE_TTL,
    ...(scope ? { scope } : {}),
  };
  await next();
}

function registerTokenExchange(provider) {
  provider.registerGrantType(TOKEN_EXCHANGE, tokenExchangeHandler, [
    'subject_token', 'subject_token_type', 'actor_token', 'actor_token_type',
    'requested_token_type', 'audience', 'resource', 'scope',
  ]);
}
// ---------------------------------------------------------------------------------------------
// End of token exchange
// ---------------------------------------------------------------------------------------------

// ---------------------------------------------------------------------------------------------
// Server
// ---------------------------------------------------------------------------------------------
let providerCallback; // set once the provider exists, which needs the port, which needs listen()

async function handle(req, res) {
  const url = new URL(req.url, 'http://127.0.0.1');
  if (url.pathname.startsWith('/__test/')) return testEndpoint(req, res, url);

  const endpoint = endpointOf(url.pathname);
  counters[endpoint] = (counters[endpoint] ?? 0) + 1;
  if (LOG_REQUESTS) {
    const started = Date.now();
    const shown = req.url.length > 160 ? `${req.url.slice(0, 160)}...` : req.url;
    res.on('finish', () => console.error(`idp: ${req.method} ${shown} -> ${res.statusCode} (${Date.now() - started} ms)`));
  }
  if (delays[endpoint]) await new Promise((resolve) => { setTimeout(resolve, delays[endpoint]); });
  if (failures[endpoint]) return sendJson(res, failures[endpoint], { error: 'injected_failure' });
  if (!providerCallback) return sendJson(res, 503, { error: 'starting' });
  return providerCallback(req, res);
}

const server = http.createServer(handle);

// ---- mTLS listener: HTTPS asking for (not verifying) client certificates, the same provider ----
// With IDP_MTLS_CERT_FILE and IDP_MTLS_KEY_FILE (the server's PEM certificate and key), a second
// listener on 127.0.0.1 (IDP_MTLS_PORT, default any) whose clients' certificates the mTLS feature
// reads; the ready line then carries "mtls":"https://127.0.0.1:PORT".
const MTLS_CERT_FILE = env.IDP_MTLS_CERT_FILE;
const mtlsServer = MTLS_CERT_FILE
  ? https.createServer(
    { cert: readFileSync(MTLS_CERT_FILE), key: readFileSync(env.IDP_MTLS_KEY_FILE), requestCert: true, rejectUnauthorized: false },
    handle,
  )
  : undefined;
function listenMtls() {
  return new Promise((resolve, reject) => {
    if (!mtlsServer) return resolve(undefined);
    mtlsServer.once('error', reject);
    return mtlsServer.listen(Number(env.IDP_MTLS_PORT ?? 0), '127.0.0.1', () => resolve(`https://127.0.0.1:${mtlsServer.address().port}`));
  });
}
// ---- end mTLS listener --------------------------------------------------------------------------

server.listen(PORT, '127.0.0.1', async () => {
  const { port } = server.address();
  const issuer = `http://127.0.0.1:${port}`;
  try {
    const provider = new Provider(issuer, configuration);
    registerTokenExchange(provider); // before the clients load: `exchanger` is allowed its grant
    // Static clients are only validated on first use; load each now so a bad client (e.g. from
    // IDP_EXTRA_CLIENTS) fails the start, not some later request.
    for (const { client_id: id } of clients) await provider.Client.find(id);
    // Surface the provider's own failures on stderr; without this a 500 is silent.
    provider.on('server_error', (_ctx, err) => console.error('idp: server_error', err));
    for (const event of ['grant.error', 'introspection.error', 'revocation.error', 'end_session.error', 'backchannel.error']) {
      provider.on(event, (...args) => console.error(`idp: ${event}`, args[args.length - 1]));
    }
    providerCallback = provider.callback();
  } catch (err) {
    console.error('idp: invalid provider configuration:', err.error_description ?? '', err);
    process.exit(1);
  }
  let mtls;
  try {
    mtls = await listenMtls();
  } catch (err) {
    console.error('idp: cannot start the mTLS listener:', err.message);
    process.exit(1);
  }
  console.error(`idp: listening on ${issuer} (keys ${JWKS_FILE}, alg ${SIGNING_ALG}, access-token TTL ${AT_TTL}s)`);
  process.stdout.write(`IDP_READY ${JSON.stringify({ issuer, mtls })}\n`);
});

server.on('error', (err) => {
  console.error(`idp: cannot listen on 127.0.0.1:${PORT}:`, err.message);
  process.exit(1);
});

function shutdown(why) {
  console.error(`idp: ${why}, shutting down`);
  server.close(() => process.exit(0));
  server.closeAllConnections();
  mtlsServer?.closeAllConnections();
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGTERM', () => shutdown('SIGTERM'));
process.on('SIGINT', () => shutdown('SIGINT'));
// The Rust harness sets this and keeps our stdin open: if the test process dies without
// stopping us (SIGKILL, abort), stdin closes and we exit instead of lingering on the port.
if (env.IDP_EXIT_ON_STDIN_EOF === '1') {
  process.stdin.on('end', () => shutdown('stdin closed'));
  process.stdin.resume();
}
