// Test OpenID Connect provider for TokenRoute's integration tests.
//
// It is the real `oidc-provider` (the certified implementation Logto is built
// on), configured the way Logto configures it: issuer under /oidc, ES384 ID
// tokens, profile/email/roles claims placed directly in the ID token, PKCE
// required. Instead of a login UI it finishes every interaction automatically
// with a configurable identity, and it exposes a few /test control endpoints
// that make it misbehave in exactly one way (a tampered ID token, a rotated
// signing key) so the gateway's checks can each be tested against a real OP.
//
// Protocol with the test harness:
//   - stdout carries exactly one line, JSON: {"issuer": "...", "control": "..."}
//     printed once the server listens. Everything else goes to stderr.
//   - the process exits on SIGTERM/SIGINT or when stdin closes, so a test that
//     holds stdin as a pipe stops the server just by dropping it.
//
// See README.md beside this file for the control endpoints.

import { randomBytes } from 'node:crypto';
import { createServer } from 'node:http';

import Koa from 'koa';
import mount from 'koa-mount';
import {
  CompactSign, calculateJwkThumbprint, decodeProtectedHeader, exportJWK, generateKeyPair,
} from 'jose';

// ---------------------------------------------------------------------------
// Quiet logging. oidc-provider prints notices with console.info, which goes to
// stdout and would corrupt the one-line protocol; send every console method to
// stderr, and only when OIDC_DEBUG is set (server errors are always logged).
const DEBUG = Boolean(process.env.OIDC_DEBUG);
const toStderr = (...args) => { if (DEBUG) console.error(...args); };
console.log = toStderr;
console.info = toStderr;
console.debug = toStderr;
console.warn = toStderr;
// Imported only now so that its import-time notice is silenced too: it warns
// "Unsupported runtime" on Node 20 (it targets Node 22+ LTS), yet everything
// this server uses works on Node 20.18+ (URL.parse, crypto.hash, WebCrypto).
const { default: Provider, interactionPolicy } = await import('oidc-provider');

// ---------------------------------------------------------------------------
// Configuration from the environment.
const list = (value) => (value || '').split(',').map((s) => s.trim()).filter(Boolean);

const PORT = Number(process.env.OIDC_PORT || 0);
const HOST = '127.0.0.1';
const CLIENT_ID = process.env.CLIENT_ID || 'tokenroute';
const CLIENT_SECRET = process.env.CLIENT_SECRET || 'tokenroute-secret';
const REDIRECT_URIS = list(process.env.REDIRECT_URIS);
const POST_LOGOUT_REDIRECT_URIS = list(process.env.POST_LOGOUT_REDIRECT_URIS);

if (REDIRECT_URIS.length === 0) {
  console.error('REDIRECT_URIS is required (comma-separated)');
  process.exit(2);
}

// Stop with the test: signals, or the parent dropping our stdin.
process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(0));
// OIDC_IGNORE_STDIN=1 is for running it by hand in the background (stdin from
// /dev/null would otherwise stop it at once).
if (!process.env.OIDC_IGNORE_STDIN) {
  process.stdin.on('end', () => process.exit(0));
  process.stdin.on('error', () => process.exit(0));
  process.stdin.resume();
}

// ---------------------------------------------------------------------------
// Signing keys. Logto signs ID tokens with an EC P-384 key (ES384).
async function newSigningKey() {
  const { privateKey } = await generateKeyPair('ES384', { extractable: true });
  const jwk = await exportJWK(privateKey);
  jwk.kid = await calculateJwkThumbprint(jwk);
  jwk.alg = 'ES384';
  jwk.use = 'sig';
  const { d, ...publicJwk } = jwk; // eslint-disable-line no-unused-vars
  return { privateKey, privateJwk: jwk, publicJwk };
}

// The key oidc-provider was built with (its keystore is fixed at construction).
const originalKey = await newSigningKey();
// Set by POST /test/rotate; when set, /oidc/jwks serves only this key and every
// ID token leaving the token endpoint is re-signed with it.
let rotatedKey = null;
const currentKey = () => rotatedKey || originalKey;

// ---------------------------------------------------------------------------
// Test state driven by the control endpoints.
const DEFAULT_IDENTITY = {
  sub: 'user-1', email: 'alice@example.com', name: 'Alice Example', roles: [],
};
let nextIdentity = { ...DEFAULT_IDENTITY };
// sub -> identity used when that sub logged in, so findAccount returns the
// claims of the identity that actually logged in.
const identities = new Map();
const TAMPER_MODES = new Set(['none', 'signature', 'issuer', 'audience', 'expired', 'nonce']);
let tamperMode = 'none';
let lastTokenRequest = null;

// Login prompt: besides "no session", also ask for a login when the browser's
// session belongs to an identity other than the one set by /test/next-login,
// so "the next login uses this identity" holds even for a reused cookie jar.
const sameIdentity = (a, b) => JSON.stringify(a) === JSON.stringify(b);
const policy = interactionPolicy.base();
policy.get('login').checks.add(new interactionPolicy.Check(
  'test_identity_changed',
  'the test harness selected another identity',
  (ctx) => {
    const { accountId } = ctx.oidc.session;
    if (!accountId || ctx.oidc.result?.login) return interactionPolicy.Check.NO_NEED_TO_PROMPT;
    return sameIdentity(identities.get(accountId), nextIdentity)
      ? interactionPolicy.Check.NO_NEED_TO_PROMPT
      : interactionPolicy.Check.REQUEST_PROMPT;
  },
));

// ---------------------------------------------------------------------------
// Listen first (the port may be ephemeral), then build the provider with the
// issuer that includes the real port.
const server = createServer();
await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(PORT, HOST, resolve);
});
const { port } = server.address();
const ORIGIN = `http://${HOST}:${port}`;
const ISSUER = `${ORIGIN}/oidc`; // like Logto: the provider lives under /oidc

const cookieKeys = [randomBytes(32).toString('base64url'), randomBytes(32).toString('base64url')];

const provider = new Provider(ISSUER, {
  clients: [{
    client_id: CLIENT_ID,
    client_secret: CLIENT_SECRET,
    // 'web' allows http://127.0.0.1 redirect URIs for the code flow (only the
    // implicit flow would demand https).
    application_type: 'web',
    redirect_uris: REDIRECT_URIS,
    post_logout_redirect_uris: POST_LOGOUT_REDIRECT_URIS,
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
    id_token_signed_response_alg: 'ES384',
  }],
  jwks: { keys: [originalKey.privateJwk] },
  enabledJWA: { idTokenSigningAlgValues: ['ES384'] },

  // Scopes and claims as Logto defines them.
  scopes: ['openid', 'offline_access', 'profile', 'email', 'roles'],
  claims: {
    openid: ['sub'],
    profile: ['name', 'username'],
    email: ['email', 'email_verified'],
    roles: ['roles'],
  },
  // Logto puts the scope claims straight into the ID token (not only userinfo).
  conformIdTokenClaims: false,

  pkce: { required: () => true }, // S256 is the only method oidc-provider 9 accepts

  features: {
    devInteractions: { enabled: false }, // our automatic handlers below instead
    rpInitiatedLogout: {
      enabled: true,
      // Like Logto: no confirmation question, the form submits itself with
      // logout=yes. A non-browser client gets this HTML with status 200.
      logoutSource: async (ctx, form) => {
        ctx.type = 'html';
        ctx.body = '<!DOCTYPE html><html><head><title>Logout</title></head><body>'
          + `${form.replace('</form>', '<input type="hidden" name="logout" value="yes"/></form>')}`
          + '<script>document.forms[0].submit()</script></body></html>';
      },
      postLogoutSuccessSource: async (ctx) => {
        ctx.type = 'html';
        ctx.body = '<!DOCTYPE html><html><body><p>Signed out.</p></body></html>';
      },
    },
  },
  interactions: {
    policy,
    url: async (ctx, interaction) => `/interaction/${interaction.uid}`,
  },

  findAccount: async (ctx, sub) => {
    const identity = identities.get(sub);
    if (!identity) return undefined;
    return {
      accountId: sub,
      // oidc-provider filters these down to what the granted scopes allow.
      claims: async () => ({
        sub,
        email: identity.email,
        email_verified: true,
        name: identity.name,
        username: identity.username ?? identity.sub,
        roles: identity.roles ?? [],
      }),
    };
  },

  cookies: { keys: cookieKeys },
  // oidc-provider's default lifetimes, spelled out so that it does not print
  // "you SHOULD change" notices (same for the two functions below).
  ttl: {
    AuthorizationCode: 60,
    AccessToken: 3600,
    IdToken: 3600,
    RefreshToken: 14 * 24 * 3600,
    Interaction: 3600,
    Session: 14 * 24 * 3600,
    Grant: 14 * 24 * 3600,
  },
  clientBasedCORS: () => false,
  renderError: async (ctx, out) => {
    ctx.type = 'json';
    ctx.body = out;
  },
});

provider.on('server_error', (ctx, err) => console.error('oidc-provider server_error:', err));

// ---------------------------------------------------------------------------
// ID token rewriting (tamper modes and key rotation).
const b64json = (part) => JSON.parse(Buffer.from(part, 'base64url').toString());
const jsonB64 = (obj) => Buffer.from(JSON.stringify(obj)).toString('base64url');

async function sign(header, payload, key) {
  return new CompactSign(new TextEncoder().encode(JSON.stringify(payload)))
    .setProtectedHeader({ ...header, kid: key.privateJwk.kid })
    .sign(key.privateKey);
}

async function rewriteIdToken(idToken, mode) {
  const [h, p, s] = idToken.split('.');
  const header = b64json(h);
  const payload = b64json(p);
  const now = Math.floor(Date.now() / 1000);
  const key = currentKey();

  switch (mode) {
    case 'signature':
      // Change the claims but keep the (now wrong) signature. If a rotated key
      // is in force, first re-sign so that only the payload change is wrong.
      if (rotatedKey) {
        const [h2, , s2] = (await sign(header, payload, key)).split('.');
        return [h2, jsonB64({ ...payload, email: 'mallory@example.com' }), s2].join('.');
      }
      return [h, jsonB64({ ...payload, email: 'mallory@example.com' }), s].join('.');
    case 'issuer':
      return sign(header, { ...payload, iss: 'http://evil.example/oidc' }, key);
    case 'audience':
      return sign(header, { ...payload, aud: 'someone-else' }, key);
    case 'expired':
      return sign(header, { ...payload, exp: now - 3600, iat: now - 7200 }, key);
    case 'nonce':
      return sign(header, { ...payload, nonce: 'wrong-nonce' }, key);
    default:
      // 'none': untouched, unless the key was rotated.
      return rotatedKey ? sign(header, payload, key) : idToken;
  }
}

// ---------------------------------------------------------------------------
// The koa app: control endpoints, interactions and interception in front of
// the provider, which is mounted at /oidc.
const app = new Koa();
app.keys = cookieKeys; // koa-mount hands the provider our ctx, so our ctx.cookies must sign like it
app.silent = !DEBUG;

async function readJson(ctx) {
  const chunks = [];
  for await (const chunk of ctx.req) chunks.push(chunk);
  const text = Buffer.concat(chunks).toString();
  if (!text) return {};
  try {
    return JSON.parse(text);
  } catch {
    ctx.throw(400, 'body must be JSON');
  }
  return {};
}

// Control endpoints under /test (errors answered as JSON too).
app.use(async (ctx, next) => {
  if (!ctx.path.startsWith('/test/')) return next();
  try {
    return await control(ctx);
  } catch (err) {
    ctx.status = err.status || 500;
    ctx.body = { error: err.message };
    return undefined;
  }
});

async function control(ctx) {
  const route = `${ctx.method} ${ctx.path}`;
  switch (route) {
    case 'GET /test/health':
      ctx.body = { ok: true };
      return undefined;
    case 'POST /test/next-login': {
      const body = await readJson(ctx);
      if (typeof body.sub !== 'string' || !body.sub) ctx.throw(400, 'sub is required');
      nextIdentity = {
        sub: body.sub,
        email: body.email ?? DEFAULT_IDENTITY.email,
        name: body.name ?? DEFAULT_IDENTITY.name,
        roles: Array.isArray(body.roles) ? body.roles.map(String) : [],
        ...(typeof body.username === 'string' ? { username: body.username } : {}),
      };
      ctx.body = { identity: nextIdentity };
      return undefined;
    }
    case 'POST /test/tamper': {
      const { mode } = await readJson(ctx);
      if (!TAMPER_MODES.has(mode)) ctx.throw(400, `mode must be one of ${[...TAMPER_MODES].join(', ')}`);
      tamperMode = mode;
      ctx.body = { mode };
      return undefined;
    }
    case 'POST /test/rotate':
      rotatedKey = await newSigningKey();
      ctx.body = { kid: rotatedKey.publicJwk.kid };
      return undefined;
    case 'GET /test/last-token-request':
      ctx.body = lastTokenRequest ?? {};
      return undefined;
    default:
      ctx.throw(404, 'unknown control endpoint');
  }
  return undefined;
}

// Automatic interactions: no HTML, no human. The provider redirects the
// browser here with a prompt; we answer it and redirect back to /oidc/auth/:uid.
app.use(async (ctx, next) => {
  if (ctx.method !== 'GET' || !/^\/interaction\/[^/]+$/.test(ctx.path)) return next();

  let details;
  try {
    details = await provider.interactionDetails(ctx.req, ctx.res);
  } catch (err) {
    ctx.status = 400;
    ctx.body = { error: 'interaction_not_found', error_description: err.message };
    return undefined;
  }
  const { prompt, params, session } = details;

  let result;
  let switchingFrom = null;
  if (prompt.name === 'login') {
    const identity = { ...nextIdentity };
    identities.set(identity.sub, identity);
    result = { login: { accountId: identity.sub } };
    if (session?.accountId && session.accountId !== identity.sub) switchingFrom = session;
  } else if (prompt.name === 'consent') {
    // Grant everything that was asked for, as a first-party Logto app would.
    const grant = details.grantId
      ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
    const { missingOIDCScope, missingOIDCClaims, missingResourceScopes } = prompt.details;
    if (missingOIDCScope) grant.addOIDCScope(missingOIDCScope.join(' '));
    if (missingOIDCClaims) grant.addOIDCClaims(missingOIDCClaims);
    if (missingResourceScopes) {
      for (const [indicator, scopes] of Object.entries(missingResourceScopes)) {
        grant.addResourceScope(indicator, scopes.join(' '));
      }
    }
    const grantId = await grant.save();
    result = { consent: details.grantId ? {} : { grantId } };
  } else {
    result = { error: 'access_denied', error_description: `unsupported prompt ${prompt.name}` };
  }

  const returnTo = await provider.interactionResult(ctx.req, ctx.res, result, {
    mergeWithLastSubmission: true,
  });
  // Switching the account of an existing browser session would make
  // oidc-provider answer the resume with a self-submitting logout form (a
  // browser-only step). Sign the old account out of the stored session now
  // (after the result is saved: oidc-provider refuses to read an interaction
  // whose session principal changed), as if the user had logged out first.
  if (switchingFrom) {
    const stored = await provider.Session.findByUid(switchingFrom.uid);
    if (stored) {
      Object.assign(stored, { accountId: undefined, loginTs: undefined, authorizations: undefined });
      await stored.persist();
    }
  }
  ctx.status = 303;
  ctx.redirect(returnTo);
  return undefined;
});

// After a rotation the provider no longer knows the key our ID tokens are
// signed with, so an id_token_hint sent to the end-session endpoint would be
// rejected. Re-sign such a hint with the provider's own key before it sees it.
async function resignHintForProvider(hint) {
  try {
    if (!rotatedKey || decodeProtectedHeader(hint).kid !== rotatedKey.publicJwk.kid) return hint;
    const [h, p] = hint.split('.');
    return await sign(b64json(h), b64json(p), originalKey);
  } catch {
    return hint; // not a JWS: let the provider reject it
  }
}

app.use(async (ctx, next) => {
  if (ctx.path !== '/oidc/session/end' || !rotatedKey) return next();
  if (ctx.method === 'GET' && ctx.query.id_token_hint) {
    const query = { ...ctx.query };
    query.id_token_hint = await resignHintForProvider(query.id_token_hint);
    ctx.query = query;
  } else if (ctx.method === 'POST' && ctx.is('application/x-www-form-urlencoded')) {
    // Read the form ourselves; oidc-provider then uses ctx.request.body.
    const chunks = [];
    for await (const chunk of ctx.req) chunks.push(chunk);
    const form = Object.fromEntries(new URLSearchParams(Buffer.concat(chunks).toString()));
    if (form.id_token_hint) form.id_token_hint = await resignHintForProvider(form.id_token_hint);
    ctx.request.body = form;
  }
  return next();
});

// Key rotation: serve only the new key.
app.use(async (ctx, next) => {
  if (ctx.method === 'GET' && ctx.path === '/oidc/jwks' && rotatedKey) {
    ctx.type = 'application/jwk-set+json; charset=utf-8';
    ctx.body = { keys: [rotatedKey.publicJwk] };
    return undefined;
  }
  return next();
});

// Token endpoint interception: record the request, then rewrite the id_token
// of a successful response (tamper mode, one-shot; rotated key, always).
app.use(async (ctx, next) => {
  if (ctx.method !== 'POST' || ctx.path !== '/oidc/token') return next();
  await next();

  // oidc-provider parsed the form into ctx.oidc.params; it shares our ctx.
  const params = ctx.oidc?.params ?? {};
  lastTokenRequest = {
    grant_type: params.grant_type ?? null,
    code_verifier_present: Boolean(params.code_verifier),
    redirect_uri: params.redirect_uri ?? null,
    client_auth: /^basic /i.test(ctx.get('authorization')) ? 'client_secret_basic'
      : (ctx.oidc?.body?.client_secret ? 'client_secret_post' : 'none'),
    status: ctx.status,
    error: ctx.body?.error ?? null,
  };

  if (ctx.status !== 200 || typeof ctx.body?.id_token !== 'string') return undefined;
  const mode = tamperMode;
  tamperMode = 'none';
  if (mode !== 'none' || rotatedKey) {
    ctx.body = { ...ctx.body, id_token: await rewriteIdToken(ctx.body.id_token, mode) };
  }
  return undefined;
});

app.use(mount('/oidc', provider));

server.on('request', app.callback());
process.stdout.write(`${JSON.stringify({ issuer: ISSUER, control: `${ORIGIN}/test` })}\n`);
