// The authorization server: oidc-provider configured for tower-bearer's interop tests.
//
// Everything here is oidc-provider's own behaviour switched on through its documented
// configuration; the fixture adds no grant logic of its own.

import { createPrivateKey, createPublicKey, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';

import * as jose from 'jose';
import Provider, { errors } from 'oidc-provider';

/** The scopes an access token for one of the fixture's APIs may carry. */
export const API_SCOPES = 'api:read api:write';

/**
 * A client's private key from its PEM file, with what oidc-provider needs to know of it.
 * The key is read here, not sent in, so that node and the Rust tests use one file.
 */
export function loadClientKey({ private_key: path, kid, alg }) {
  const pem = readFileSync(path, 'utf8');
  const privateKey = createPrivateKey(pem);
  const publicJwk = createPublicKey(privateKey).export({ format: 'jwk' });
  return { privateKey, publicJwk: { ...publicJwk, kid, alg, use: 'sig' }, kid, alg };
}

/**
 * Client metadata for oidc-provider from the harness's description of a client.
 */
function clientMetadata(client, { issuer, requireDpop }) {
  const isPublic = client.token_endpoint_auth_method === 'none';
  const metadata = {
    client_id: client.client_id,
    token_endpoint_auth_method: client.token_endpoint_auth_method,
    grant_types: isPublic
      ? ['authorization_code', 'refresh_token']
      : ['client_credentials', 'authorization_code', 'refresh_token'],
    response_types: ['code'],
    // Never fetched: the fixture drives the authorization-code flow itself and reads the code
    // off the redirect.
    redirect_uris: [`${issuer}/cb`],
    dpop_bound_access_tokens: requireDpop,
    // The only signing key the provider holds is an EC key (see `signingKeys`).
    id_token_signed_response_alg: 'ES256',
  };
  if (client.client_secret !== undefined) {
    metadata.client_secret = client.client_secret;
  }
  if (client.key) {
    metadata.jwks = { keys: [client.key.publicJwk] };
  }
  return metadata;
}

async function signingKeys() {
  const { privateKey } = await jose.generateKeyPair('ES256', { extractable: true });
  const jwk = await jose.exportJWK(privateKey);
  return { keys: [{ ...jwk, alg: 'ES256', use: 'sig', kid: 'fixture-signing' }] };
}

/**
 * Builds the provider.
 *
 * `resources` maps each API's resource indicator (RFC 8707) to nothing in particular: every
 * indicator listed is an API the provider issues opaque access tokens for, and the first is the
 * default when a client names none.
 */
export async function createProvider({ issuer, config, clients, resources }) {
  const [defaultResource] = resources;
  const accessTokenTtl = config.access_token_ttl;
  const refreshTokenTtl = config.refresh_token_ttl;

  const provider = new Provider(issuer, {
    clients: clients.map((client) => clientMetadata(client, {
      issuer,
      requireDpop: config.require_dpop,
    })),
    jwks: await signingKeys(),
    cookies: { keys: [randomBytes(32).toString('base64url')] },
    findAccount(ctx, sub) {
      return { accountId: sub, claims: () => ({ sub }) };
    },
    // The fixture's own interaction route (fixture.mjs) logs the test user in and consents.
    interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
    scopes: ['openid', 'offline_access'],
    // Rotation on every use, so that reusing a refresh token is the server's own business:
    // oidc-provider then revokes the whole grant ("refresh token already used").
    rotateRefreshToken: true,
    // One clock on loopback: a token is dead the second its lifetime ends, not 15 s later
    // (the default tolerance), so that tests spanning several short lifetimes see each end.
    clockTolerance: 0,
    ttl: {
      AccessToken: accessTokenTtl,
      ClientCredentials: accessTokenTtl,
      RefreshToken: refreshTokenTtl,
      Grant: refreshTokenTtl,
      Session: refreshTokenTtl,
      AuthorizationCode: 60,
      Interaction: 600,
      IdToken: accessTokenTtl,
    },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      introspection: { enabled: true },
      revocation: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource(ctx, client, oneOf) {
          if (oneOf) {
            return oneOf.includes(defaultResource) ? defaultResource : oneOf;
          }
          return defaultResource;
        },
        // A refresh without `resource` keeps the API the grant was for, as a client holding
        // one refresh token for one API expects.
        useGrantedResource: () => true,
        getResourceServerInfo(ctx, indicator) {
          if (!resources.includes(indicator)) {
            throw new errors.InvalidTarget();
          }
          return {
            scope: API_SCOPES,
            accessTokenTTL: accessTokenTtl,
            // Opaque: the API looks each token up in the provider's store, so a revoked or
            // expired token is refused at once, as the interop tests need.
            accessTokenFormat: 'opaque',
          };
        },
      },
      dPoP: {
        enabled: true,
        nonceSecret: randomBytes(32),
        requireNonce: () => true,
      },
    },
  });

  // The fixture serves plain HTTP on loopback; nothing sits in front of it.
  provider.proxy = false;
  return provider;
}
