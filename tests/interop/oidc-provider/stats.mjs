// What the tests can ask of the fixture afterwards: what the token endpoint and the API saw.
//
// Requests the fixture makes itself (its authorization-code flows and revocations) carry the
// INTERNAL header and are not counted, so the figures are the client under test's alone.

export const INTERNAL = 'x-fixture-internal';

function bump(map, key) {
  map[key] = (map[key] ?? 0) + 1;
}

function nested(map, key) {
  map[key] ??= {};
  return map[key];
}

/** How a token request authenticated its client, read off the wire. */
function clientAuthOnTheWire(ctx) {
  const params = ctx.oidc?.params ?? {};
  const authorization = ctx.get('authorization');
  if (/^basic /i.test(authorization)) return 'client_secret_basic';
  if (params.client_assertion !== undefined) return 'private_key_jwt';
  if (params.client_secret !== undefined) return 'client_secret_post';
  return 'none';
}

export class Stats {
  constructor() {
    this.data = {
      // grant_type → { ok, <error code> } for the token endpoint.
      token_endpoint: {},
      // client_id → { <method as sent> } for every token request that reached the client check.
      client_auth: {},
      // Token requests that carried a DPoP proof.
      dpop_token_requests: 0,
      // Grants (token families) revoked, by refresh-token reuse or by revoking a refresh token.
      grants_revoked: 0,
      // Requests to the issuer's origin that carried an access token (Bearer or DPoP): the
      // token endpoint's origin must never receive one.
      access_tokens_sent_to_issuer: 0,
      // The API: accepted requests by scheme, refused ones by `error` code.
      api: { ok: {}, refused: {} },
    };
  }

  /** Counts the token endpoint's outcomes through oidc-provider's own events. */
  watch(provider) {
    const tokenRequest = (ctx) => {
      if (ctx.get(INTERNAL)) return undefined;
      const grantType = ctx.oidc?.params?.grant_type ?? 'unknown';
      const clientId = ctx.oidc?.client?.clientId ?? ctx.oidc?.params?.client_id;
      if (clientId !== undefined) {
        bump(nested(this.data.client_auth, clientId), clientAuthOnTheWire(ctx));
      }
      if (ctx.get('dpop')) this.data.dpop_token_requests += 1;
      return nested(this.data.token_endpoint, grantType);
    };
    provider.on('grant.success', (ctx) => {
      const counts = tokenRequest(ctx);
      if (counts) bump(counts, 'ok');
    });
    provider.on('grant.error', (ctx, err) => {
      const counts = tokenRequest(ctx);
      if (counts) bump(counts, err.error ?? 'server_error');
    });
    provider.on('grant.revoked', () => {
      this.data.grants_revoked += 1;
    });
  }

  issuerRequest(req) {
    if (/^(bearer|dpop) /i.test(req.headers.authorization ?? '')) {
      this.data.access_tokens_sent_to_issuer += 1;
    }
  }

  apiAccepted(scheme) {
    bump(this.data.api.ok, scheme);
  }

  apiRefused(error) {
    bump(this.data.api.refused, error);
  }

  toJSON() {
    return this.data;
  }
}
