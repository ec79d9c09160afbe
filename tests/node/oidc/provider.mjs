// A real OpenID provider (npm oidc-provider) on loopback for the portal's OAuth tests; started by tests/oidc.py.
//
// The settings arrive as one JSON object on stdin (tests/oidc.py documents its keys); once listening, the script
// prints one JSON line on stdout: {"issuer": "http://127.0.0.1:PORT", "port": PORT}.
//
// Besides the provider's own endpoints it serves:
//   GET  /interaction/:uid  signs in the user named by the request's `login_hint` and approves every scope and
//                           resource asked for (no browser, no form): a test "browser" only follows redirects.
//   POST /_test/keys        {"keys": [private JWKs]}: a new provider with these signing keys replaces the old one on
//                           the same port (key rotation; grants and tokens of the old one are forgotten).
//   POST /_test/revoke-exchanged {"sub": USER, "refuse": true}: every token issued by token exchange for USER is
//                           revoked (and, with `refuse`, their tokens are refused from now on).
//   POST /_test/outage      {"status": 503, "times": N}: the next N token-endpoint requests get that status and an
//                           OAuth `temporarily_unavailable` error (a provider briefly down or overloaded).
//
// Token exchange (RFC 8693, grant urn:ietf:params:oauth:grant-type:token-exchange) for clients allowed that grant:
// the subject_token must be an access token this provider issued (a JWT it signed, with its issuer, not expired, or
// an opaque one it still holds) for a known user; the new access token is for that user (sub) and the one requested
// `resource` (its audience, scopes and format). `settings.exchange.refuse: [USER...]` refuses those users' tokens
// (invalid_grant), as a policy of a real authorization server would.
import crypto from 'node:crypto';
import http from 'node:http';

import Provider, { errors } from 'oidc-provider';

const settings = JSON.parse(await new Promise((resolve, reject) => {
  let text = '';
  process.stdin.setEncoding('utf8');
  process.stdin.on('data', (chunk) => { text += chunk; });
  process.stdin.on('end', () => resolve(text));
  process.stdin.on('error', reject);
}));

const users = settings.users ?? {};
const resources = settings.resources ?? {};

function userClaims(accountId) {
  const user = users[accountId] ?? {};
  const claims = { ...(user.claims ?? {}) };
  if (user.email) claims.email = user.email;
  if (user.groups) claims.groups = user.groups;
  return claims;
}

const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';
const exchanged = new Map(); // sub -> the values of the tokens exchanged for that user

function resourceServerInfo(indicator) {
  const resource = resources[indicator];
  if (!resource) throw new errors.InvalidTarget(`unknown resource ${indicator}`);
  const info = { scope: resource.scope ?? '', audience: resource.audience ?? indicator };
  if (resource.ttl) info.accessTokenTTL = resource.ttl;
  if ((resource.format ?? 'jwt') === 'jwt') {
    info.accessTokenFormat = 'jwt';
    info.jwt = { sign: { alg: resource.alg ?? 'RS256' } };
  } else {
    info.accessTokenFormat = 'opaque';
  }
  return info;
}

// The user a JWT access token signed by one of `jwks` names (RS256, this issuer, not expired), else undefined.
function jwtSubject(token, jwks, issuer) {
  const [head, body, signature] = token.split('.');
  let header;
  let claims;
  try {
    header = JSON.parse(Buffer.from(head, 'base64url'));
    claims = JSON.parse(Buffer.from(body, 'base64url'));
  } catch {
    return undefined;
  }
  const jwk = jwks.keys.find((key) => key.kid === header.kid);
  if (!jwk || header.alg !== 'RS256') return undefined;
  const { d, p, q, dp, dq, qi, ...publicJwk } = jwk;
  const key = crypto.createPublicKey({ key: publicJwk, format: 'jwk' });
  const signed = crypto.verify('RSA-SHA256', Buffer.from(`${head}.${body}`), key, Buffer.from(signature, 'base64url'));
  if (!signed || claims.iss !== issuer || !(claims.exp > Date.now() / 1000)) return undefined;
  return claims.sub;
}

function tokenExchange(provider, jwks) {
  return async function tokenExchangeHandler(ctx) {
    const { params, client } = ctx.oidc;
    if (params.subject_token_type !== ACCESS_TOKEN_TYPE) {
      throw new errors.InvalidRequest(`subject_token_type must be ${ACCESS_TOKEN_TYPE}`);
    }
    const subjectToken = params.subject_token ?? '';
    const sub = subjectToken.split('.').length === 3
      ? jwtSubject(subjectToken, jwks, provider.issuer)
      : (await provider.AccessToken.find(subjectToken))?.accountId;
    if (!sub || !users[sub]) throw new errors.InvalidGrant('the subject token is invalid, expired or not issued here');
    if ((settings.exchange?.refuse ?? []).includes(sub)) {
      throw new errors.InvalidGrant('token exchange is not permitted for this user');
    }
    const indicator = params.resource;
    if (typeof indicator !== 'string') throw new errors.InvalidTarget('exactly one resource is required');
    const resourceServer = new provider.ResourceServer(indicator, resourceServerInfo(indicator));
    const allowed = new Set(resourceServer.scope.split(' ').filter(Boolean));
    const asked = (params.scope ?? '').split(' ').filter(Boolean);
    const scope = (asked.length ? asked.filter((s) => allowed.has(s)) : [...allowed]).join(' ');
    const token = new provider.AccessToken({ accountId: sub, client, scope: scope || undefined });
    token.resourceServer = resourceServer;
    const value = await token.save();
    exchanged.set(sub, [...(exchanged.get(sub) ?? []), value]);
    ctx.body = {
      access_token: value,
      issued_token_type: ACCESS_TOKEN_TYPE,
      token_type: 'Bearer',
      expires_in: token.expiration,
      scope: token.scope,
    };
  };
}

function build(issuer, jwks) {
  const provider = new Provider(issuer, {
    clients: settings.clients ?? [],
    jwks,
    // Resource scopes are listed too: dynamic registration (RFC 7591) refuses a client `scope` naming others.
    scopes: [...new Set(['openid', 'offline_access', 'email', 'profile', ...(settings.scopes ?? []),
      ...Object.values(resources).flatMap((resource) => (resource.scope ?? '').split(' ').filter(Boolean))])],
    claims: { openid: ['sub'], email: ['email'], profile: ['groups'] },
    clientBasedCORS: () => true,
    pkce: { required: () => true },
    ttl: {
      // A resource's own `ttl` wins (token exchange issues tokens of several lifetimes from one provider).
      AccessToken: (_ctx, token) => token.resourceServer?.accessTokenTTL ?? settings.ttl?.AccessToken ?? 300,
      ClientCredentials: settings.ttl?.ClientCredentials ?? 300,
      RefreshToken: settings.ttl?.RefreshToken ?? 3600,
      AuthorizationCode: 60,
      Interaction: 300,
      Session: 3600,
      Grant: 3600,
      IdToken: 300,
    },
    findAccount: async (_ctx, id) => (users[id] ? {
      accountId: id,
      claims: async () => ({ sub: id, ...userClaims(id) }),
    } : undefined),
    extraTokenClaims: async (_ctx, token) => (token.accountId ? userClaims(token.accountId) : undefined),
    issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token'),
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      introspection: { enabled: true },
      revocation: { enabled: true },
      registration: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: async () => settings.defaultResource ?? undefined,
        useGrantedResource: async () => true,
        getResourceServerInfo: async (_ctx, indicator) => resourceServerInfo(indicator),
      },
    },
  });
  provider.registerGrantType(
    TOKEN_EXCHANGE,
    tokenExchange(provider, jwks),
    ['subject_token', 'subject_token_type', 'requested_token_type', 'resource', 'audience', 'scope'],
  );
  provider.on('server_error', (_ctx, error) => { process.stderr.write(`server_error: ${error.stack}\n`); });
  return { provider, handle: provider.callback() };
}

async function interaction(provider, req, res) {
  const details = await provider.interactionDetails(req, res);
  const { prompt, params } = details;
  if (prompt.name === 'login') {
    const accountId = params.login_hint;
    if (!accountId || !users[accountId]) {
      res.writeHead(400, { 'content-type': 'text/plain' });
      res.end(`no test user ${JSON.stringify(accountId)}: add login_hint=USER to the authorization URL`);
      return;
    }
    await provider.interactionFinished(req, res, { login: { accountId } }, { mergeWithLastSubmission: false });
    return;
  }
  const grant = details.grantId
    ? await provider.Grant.find(details.grantId)
    : new provider.Grant({ accountId: details.session.accountId, clientId: params.client_id });
  const missing = prompt.details;
  if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
  if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
  for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes ?? {})) {
    grant.addResourceScope(indicator, scopes.join(' '));
  }
  const grantId = await grant.save();
  await provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
}

async function readJson(req) {
  let text = '';
  for await (const chunk of req) text += chunk;
  return JSON.parse(text);
}

let current;
const outage = { status: 503, times: 0 };
const server = http.createServer(async (req, res) => {
  const { provider, handle } = current;
  try {
    if (req.method === 'GET' && req.url.startsWith('/interaction/')) {
      await interaction(provider, req, res);
    } else if (req.method === 'POST' && req.url === '/_test/keys') {
      const body = await readJson(req);
      current = build(provider.issuer, { keys: body.keys });
      res.writeHead(204);
      res.end();
    } else if (req.method === 'POST' && req.url === '/_test/revoke-exchanged') {
      const { sub, refuse } = await readJson(req);
      if (refuse) settings.exchange = { ...settings.exchange, refuse: [...(settings.exchange?.refuse ?? []), sub] };
      for (const value of exchanged.get(sub) ?? []) await (await provider.AccessToken.find(value))?.destroy();
      exchanged.delete(sub);
      res.writeHead(204);
      res.end();
    } else if (req.method === 'POST' && req.url === '/_test/outage') {
      Object.assign(outage, await readJson(req));
      res.writeHead(204);
      res.end();
    } else if (req.method === 'POST' && req.url === '/token' && outage.times > 0) {
      outage.times -= 1;
      for await (const _ of req); // the form is read and dropped
      res.writeHead(outage.status, { 'content-type': 'application/json', 'retry-after': '1' });
      res.end(JSON.stringify({ error: 'temporarily_unavailable', error_description: 'try again later' }));
    } else {
      handle(req, res);
    }
  } catch (error) {
    process.stderr.write(`test route error: ${error.stack}\n`);
    if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
    res.end(String(error.message ?? error));
  }
});

server.listen(settings.port ?? 0, '127.0.0.1', () => {
  const { port } = server.address();
  const issuer = `http://127.0.0.1:${port}`;
  current = build(issuer, settings.jwks);
  process.stdout.write(`${JSON.stringify({ issuer, port })}\n`);
});

process.on('SIGTERM', () => server.close(() => process.exit(0)));
