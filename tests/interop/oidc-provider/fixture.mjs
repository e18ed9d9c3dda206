// What the tests ask of the fixture beyond OAuth: a real refresh token, revocation through
// RFC 7009 as the token's own client, a client assertion signed by node, the statistics, and
// rotating the API's nonce. Served under /__fixture/ on the issuer's origin, plus the
// interaction route through which the test user logs in and consents.

import { createHash, createPrivateKey, randomBytes, randomUUID } from 'node:crypto';

import * as jose from 'jose';

import { API_SCOPES } from './provider.mjs';
import { INTERNAL } from './stats.mjs';

const TEST_USER = 'test-user';

function formEncode(value) {
  return encodeURIComponent(value).replace(/%20/g, '+');
}

function readJson(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on('data', (chunk) => chunks.push(chunk));
    req.on('end', () => {
      try {
        const text = Buffer.concat(chunks).toString('utf8');
        resolve(text ? JSON.parse(text) : {});
      } catch (err) {
        reject(err);
      }
    });
    req.on('error', reject);
  });
}

function answer(res, status, body) {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}

/** Cookies across the redirects of one authorization request; paths are not needed here. */
class CookieJar {
  #cookies = new Map();

  store(response) {
    for (const line of response.headers.getSetCookie()) {
      const [pair, ...attributes] = line.split(';');
      const eq = pair.indexOf('=');
      const name = pair.slice(0, eq).trim();
      const value = pair.slice(eq + 1).trim();
      const expired = attributes.some((a) => {
        const [key, val] = a.trim().split('=');
        return (key.toLowerCase() === 'expires' && Date.parse(val) <= Date.now())
          || (key.toLowerCase() === 'max-age' && Number(val) <= 0);
      });
      if (expired || value === '') this.#cookies.delete(name);
      else this.#cookies.set(name, value);
    }
  }

  header() {
    return [...this.#cookies].map(([name, value]) => `${name}=${value}`).join('; ');
  }
}

export class Fixture {
  #provider;

  #issuer;

  #clients;

  #api;

  #stats;

  #requireDpop;

  constructor({
    provider, issuer, clients, api, stats, requireDpop,
  }) {
    this.#provider = provider;
    this.#issuer = issuer;
    this.#clients = new Map(clients.map((client) => [client.client_id, client]));
    this.#api = api;
    this.#stats = stats;
    this.#requireDpop = requireDpop;
  }

  /** Handles the request if it is the fixture's; returns whether it was. */
  async handle(req, res) {
    const { pathname } = new URL(req.url, this.#issuer);
    if (pathname.startsWith('/interaction/')) {
      await this.#interaction(req, res);
      return true;
    }
    if (!pathname.startsWith('/__fixture/')) return false;
    try {
      const route = `${req.method} ${pathname}`;
      switch (route) {
        case 'GET /__fixture/stats':
          answer(res, 200, this.#stats);
          break;
        case 'POST /__fixture/refresh-token':
          answer(res, 200, await this.#refreshToken(await readJson(req)));
          break;
        case 'POST /__fixture/revoke':
          answer(res, 200, await this.#revoke(await readJson(req)));
          break;
        case 'POST /__fixture/client-assertion': {
          const { client_id: clientId, aud } = await readJson(req);
          answer(res, 200, { client_assertion: await this.#clientAssertion(this.#client(clientId), aud) });
          break;
        }
        case 'POST /__fixture/rotate-api-nonce':
          answer(res, 200, { nonce: this.#api.rotateNonce() });
          break;
        default:
          answer(res, 404, { error: `no fixture route ${route}` });
      }
    } catch (err) {
      answer(res, 500, { error: err.message });
    }
    return true;
  }

  #client(clientId) {
    const client = this.#clients.get(clientId);
    if (!client) throw new Error(`no client ${clientId}`);
    return client;
  }

  /**
   * The test user logs in, then grants what the client asked for: oidc-provider's interaction
   * API, answered without a form.
   */
  async #interaction(req, res) {
    const { prompt, params, grantId } = await this.#provider.interactionDetails(req, res);
    let result;
    if (prompt.name === 'login') {
      result = { login: { accountId: TEST_USER } };
    } else {
      const grant = grantId
        ? await this.#provider.Grant.find(grantId)
        : new this.#provider.Grant({ accountId: TEST_USER, clientId: params.client_id });
      const { missingOIDCScope, missingOIDCClaims, missingResourceScopes } = prompt.details;
      if (missingOIDCScope) grant.addOIDCScope(missingOIDCScope.join(' '));
      if (missingOIDCClaims) grant.addOIDCClaims(missingOIDCClaims);
      for (const [indicator, scopes] of Object.entries(missingResourceScopes ?? {})) {
        grant.addResourceScope(indicator, scopes.join(' '));
      }
      result = { consent: { grantId: await grant.save() } };
    }
    await this.#provider.interactionFinished(req, res, result, { mergeWithLastSubmission: true });
  }

  async #clientAssertion(client, aud = this.#issuer) {
    if (!client.key) throw new Error(`${client.client_id} does not use private_key_jwt`);
    return new jose.SignJWT({})
      .setProtectedHeader({ alg: client.key.alg, kid: client.key.kid, typ: 'JWT' })
      .setIssuer(client.client_id)
      .setSubject(client.client_id)
      .setAudience(aud)
      .setJti(randomUUID())
      .setIssuedAt()
      .setExpirationTime('60s')
      .sign(client.key.privateKey);
  }

  /** Headers and form fields that authenticate `client` the way it is registered to. */
  async #clientAuth(client) {
    switch (client.token_endpoint_auth_method) {
      case 'client_secret_basic': {
        const pair = `${formEncode(client.client_id)}:${formEncode(client.client_secret)}`;
        return { headers: { authorization: `Basic ${Buffer.from(pair).toString('base64')}` }, form: {} };
      }
      case 'client_secret_post':
        return { headers: {}, form: { client_id: client.client_id, client_secret: client.client_secret } };
      case 'private_key_jwt':
        return {
          headers: {},
          form: {
            client_id: client.client_id,
            client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
            client_assertion: await this.#clientAssertion(client),
          },
        };
      default:
        return { headers: {}, form: { client_id: client.client_id } };
    }
  }

  /**
   * POSTs a form to one of the provider's endpoints as `client`, with a DPoP proof from `dpop`
   * if given, answering the server's nonce challenge once as any DPoP client must.
   */
  async #post(endpoint, client, fields, dpop) {
    let nonce;
    for (let attempt = 0; attempt < 2; attempt += 1) {
      const auth = await this.#clientAuth(client);
      const headers = {
        ...auth.headers,
        'content-type': 'application/x-www-form-urlencoded',
        [INTERNAL]: '1',
      };
      if (dpop) headers.dpop = await this.#dpopProof(dpop, 'POST', endpoint, nonce);
      const response = await fetch(endpoint, {
        method: 'POST',
        headers,
        body: new URLSearchParams({ ...fields, ...auth.form }),
      });
      const text = await response.text();
      const body = text ? JSON.parse(text) : {};
      if (dpop && attempt === 0 && response.status === 400 && body.error === 'use_dpop_nonce') {
        nonce = response.headers.get('dpop-nonce');
        continue;
      }
      return { status: response.status, body };
    }
    throw new Error('the DPoP nonce was refused twice');
  }

  async #dpopProof({ privateKey, publicJwk }, htm, htu, nonce) {
    return new jose.SignJWT({ htm, htu, nonce })
      .setProtectedHeader({ alg: 'ES256', typ: 'dpop+jwt', jwk: publicJwk })
      .setJti(randomBytes(16).toString('base64url'))
      .setIssuedAt()
      .sign(privateKey);
  }

  /** A DPoP key: the test's, from a PEM, or a throwaway one. */
  async #dpopKey(pem) {
    const privateKey = pem
      ? createPrivateKey(pem)
      : (await jose.generateKeyPair('ES256', { extractable: true })).privateKey;
    const { d, ...publicJwk } = await jose.exportJWK(privateKey);
    return { privateKey, publicJwk };
  }

  /**
   * A real authorization-code flow (PKCE, `offline_access`, the API as resource) by the test
   * user for `client_id`, ending in the code exchange at the token endpoint: what a user's app
   * would have done before handing the refresh token to tower-bearer.
   *
   * The exchange uses DPoP when the client must, or when the test gives its own DPoP key
   * (`dpop_key_pem`): for a public client that binds the refresh token to that key.
   */
  async #refreshToken({
    client_id: clientId, scope = `offline_access ${API_SCOPES}`, resource, dpop_key_pem: dpopKeyPem,
  }) {
    const client = this.#client(clientId);
    const redirectUri = `${this.#issuer}/cb`;
    const verifier = randomBytes(32).toString('base64url');
    const challenge = createHash('sha256').update(verifier).digest('base64url');
    const state = randomBytes(8).toString('base64url');
    const authorize = new URL('/auth', this.#issuer);
    const query = {
      client_id: clientId,
      response_type: 'code',
      redirect_uri: redirectUri,
      scope,
      prompt: 'consent',
      state,
      code_challenge: challenge,
      code_challenge_method: 'S256',
    };
    if (resource) query.resource = resource;
    authorize.search = new URLSearchParams(query).toString();

    const jar = new CookieJar();
    let url = authorize.href;
    let code;
    for (let hop = 0; hop < 10 && code === undefined; hop += 1) {
      const response = await fetch(url, { redirect: 'manual', headers: { cookie: jar.header() } });
      jar.store(response);
      const location = response.headers.get('location');
      if (!location) {
        throw new Error(`the authorization flow stopped at ${url}: ${response.status} ${await response.text()}`);
      }
      const next = new URL(location, url);
      if (next.href.startsWith(redirectUri)) {
        if (next.searchParams.get('error')) {
          throw new Error(`authorization refused: ${next.searchParams.get('error')} ${next.searchParams.get('error_description')}`);
        }
        if (next.searchParams.get('state') !== state) throw new Error('state mismatch');
        code = next.searchParams.get('code');
      }
      url = next.href;
    }
    if (!code) throw new Error('the authorization flow did not end with a code');

    const dpop = dpopKeyPem || this.#requireDpop ? await this.#dpopKey(dpopKeyPem) : undefined;
    const fields = {
      grant_type: 'authorization_code',
      code,
      redirect_uri: redirectUri,
      code_verifier: verifier,
    };
    const { status, body } = await this.#post(`${this.#issuer}/token`, client, fields, dpop);
    if (status !== 200 || !body.refresh_token) {
      throw new Error(`the code exchange failed: ${status} ${JSON.stringify(body)}`);
    }
    return body;
  }

  /**
   * RFC 7009 revocation as the token's own client, looked up in the provider's store. A token
   * that is not live (unknown, expired, revoked) has nothing to revoke: `live` says which.
   */
  async #revoke({ token }) {
    const found = await this.#provider.AccessToken.find(token)
      ?? await this.#provider.ClientCredentials.find(token)
      ?? await this.#provider.RefreshToken.find(token);
    if (!found) return { status: 200, live: false };
    const { status } = await this.#post(
      `${this.#issuer}/token/revocation`,
      this.#client(found.clientId),
      { token },
    );
    return { status, live: true, client_id: found.clientId };
  }
}
