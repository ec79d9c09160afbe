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
      AccessToken: settings.ttl?.AccessToken ?? 300,
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
        getResourceServerInfo: async (_ctx, indicator) => {
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
        },
      },
    },
  });
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
