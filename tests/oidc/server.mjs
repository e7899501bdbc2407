// A real OpenID Connect provider (npm's certified `oidc-provider`) dressed up as GitLab,
// for tests/test_gitlab_signin.py. It serves GitLab's paths (/oauth/authorize,
// /oauth/token, /oauth/userinfo and /oauth/discovery/keys), so the
// portal talks to it exactly as it talks to gitlab.com or a self-hosted GitLab.
//
// Only the sign-in page is replaced: instead of an HTML form, the test drives the
// interaction over HTTP (the authorize, token and userinfo steps stay oidc-provider's own):
//   GET  /interaction/:uid         -> JSON {uid, prompt, client_id, scope}
//   POST /interaction/:uid/login   body `account=<id>`: signs in and consents to the
//                                  requested scopes, then 303 back to the authorize flow
//   POST /interaction/:uid/deny    refuses consent: the flow ends with error=access_denied
//
// oidc-provider is pinned to 8.x: 9.x needs Node 22, and Debian 12's apt gives Node 18.
//
// Usage: node server.mjs <port>   (or PORT=...). The client comes from the environment:
// OIDC_CLIENT_ID, OIDC_CLIENT_SECRET, OIDC_REDIRECT_URI. Prints "ready <issuer>" once
// listening, and stops cleanly on SIGTERM.

import { generateKeyPairSync, randomBytes } from 'node:crypto';
import Provider from 'oidc-provider';

const port = Number(process.argv[2] ?? process.env.PORT ?? 0);
const issuer = `http://127.0.0.1:${port}`;

function required(name) {
  const value = process.env[name];
  if (!value) {
    console.error(`${name} must be set`);
    process.exit(2);
  }
  return value;
}

// GitLab-shaped accounts. `sub` is GitLab's numeric user id, as a string.
const ACCOUNTS = {
  1: { username: 'boss', name: 'The Boss', email: 'boss@example.com', verified: true },
  2: { username: 'ops', name: 'Ops Admin', email: 'ops@admins.example.com', verified: true },
  3: { username: 'plain', name: 'Plain User', email: 'plain@example.org', verified: true },
  4: { username: 'mallory', name: 'Unverified', email: 'mallory@admins.example.com', verified: false },
  // This one's userinfo carries no email (GitLab would tell it only through /api/v4/user,
  // with the read_user scope the portal does not ask for).
  5: { username: 'quiet', name: 'Quiet Admin', email: 'quiet@admins.example.com', verified: true, hideEmail: true },
};

function userinfoClaims(sub) {
  const account = ACCOUNTS[sub];
  const claims = { sub, name: account.name, nickname: account.username, preferred_username: account.username };
  if (!account.hideEmail) {
    claims.email = account.email;
    claims.email_verified = account.verified;
  }
  return claims;
}

const signingKey = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey
  .export({ format: 'jwk' });

const provider = new Provider(issuer, {
  clients: [{
    client_id: required('OIDC_CLIENT_ID'),
    client_secret: required('OIDC_CLIENT_SECRET'),
    redirect_uris: [required('OIDC_REDIRECT_URI')],
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  routes: {
    authorization: '/oauth/authorize',
    token: '/oauth/token',
    userinfo: '/oauth/userinfo',
    jwks: '/oauth/discovery/keys',
    revocation: '/oauth/revoke',
    introspection: '/oauth/introspect',
    end_session: '/oauth/logout',
  },
  jwks: { keys: [{ ...signingKey, kid: 'test-key', use: 'sig', alg: 'RS256' }] },
  cookies: { keys: [randomBytes(32).toString('hex')] },
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name', 'nickname', 'preferred_username'],
  },
  pkce: { required: () => true }, // as GitLab does when a challenge is sent; makes PKCE count
  features: { devInteractions: { enabled: false } },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  async findAccount(ctx, sub) {
    if (!(sub in ACCOUNTS)) return undefined;
    return { accountId: sub, claims: async () => userinfoClaims(sub) };
  },
});

async function readForm(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

function json(ctx, status, body) {
  ctx.status = status;
  ctx.body = body;
}

async function showInteraction(ctx) {
  const details = await provider.interactionDetails(ctx.req, ctx.res);
  json(ctx, 200, {
    uid: details.uid,
    prompt: details.prompt.name,
    client_id: details.params.client_id,
    scope: details.params.scope,
  });
}

// Sign the account in and grant the scopes asked for, in one step (login + consent).
async function login(ctx) {
  const details = await provider.interactionDetails(ctx.req, ctx.res);
  const accountId = (await readForm(ctx.req)).get('account');
  if (!(accountId in ACCOUNTS)) {
    json(ctx, 400, { error: 'unknown account' });
    return;
  }
  const grant = new provider.Grant({ accountId, clientId: details.params.client_id });
  grant.addOIDCScope(details.params.scope);
  const grantId = await grant.save();
  ctx.respond = false; // interactionFinished writes the 303 itself
  await provider.interactionFinished(
    ctx.req,
    ctx.res,
    { login: { accountId }, consent: { grantId } },
    { mergeWithLastSubmission: false },
  );
}

async function deny(ctx) {
  ctx.respond = false;
  await provider.interactionFinished(
    ctx.req,
    ctx.res,
    { error: 'access_denied', error_description: 'The resource owner denied the request' },
    { mergeWithLastSubmission: false },
  );
}

provider.use(async (ctx, next) => {
  const match = ctx.path.match(/^\/interaction\/([^/]+)(?:\/(login|deny))?$/);
  if (match && ctx.method === 'GET' && !match[2]) return showInteraction(ctx);
  if (match && ctx.method === 'POST' && match[2] === 'login') return login(ctx);
  if (match && ctx.method === 'POST' && match[2] === 'deny') return deny(ctx);
  return next();
});

const server = provider.listen(port, '127.0.0.1', () => {
  console.log(`ready ${issuer}`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
