// The protected resource the tests call: it accepts only a live access token for its own
// audience, looked up in the provider's own store (so revocation and expiry are the server's),
// and for a DPoP-bound token a valid proof of possession (RFC 9449 §4.3 and §7), with nonces
// of its own.
//
// Paths: `/api/...` wants a token for the `api` resource, `/other/...` one for the `other`
// resource; any method. A 200 answers JSON describing the token it accepted.

import { createHash, randomBytes } from 'node:crypto';

import * as jose from 'jose';

/** The proof algorithms the API accepts (those oidc-provider accepts at its token endpoint). */
const PROOF_ALGS = ['ES256', 'EdDSA'];
/** How far a proof's `iat` may be from the API's clock, in seconds. */
const IAT_WINDOW = 60;

function newNonce() {
  return randomBytes(24).toString('base64url');
}

function quoted(value) {
  return `"${String(value).replace(/["\\]/g, '')}"`;
}

class Refusal extends Error {
  constructor(scheme, error, description) {
    super(description);
    this.scheme = scheme;
    this.error = error;
  }
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    let length = 0;
    req.on('data', (chunk) => { length += chunk.length; });
    req.on('end', () => resolve(length));
    req.on('error', reject);
  });
}

export class Api {
  #provider;

  #origin;

  /** path prefix → resource indicator */
  #resources;

  #nonce = newNonce();

  /** jti → expiry (epoch seconds) of proofs already accepted */
  #seenProofs = new Map();

  #stats;

  constructor({ provider, origin, resources, stats, nonceTtl }) {
    this.#provider = provider;
    this.#origin = origin;
    this.#resources = resources;
    this.#stats = stats;
    if (nonceTtl > 0) {
      setInterval(() => this.rotateNonce(), nonceTtl * 1000).unref();
    }
    setInterval(() => this.#forgetOldProofs(), IAT_WINDOW * 1000).unref();
  }

  /** Replaces the API's DPoP nonce: the next proof carrying the old one is refused. */
  rotateNonce() {
    this.#nonce = newNonce();
    return this.#nonce;
  }

  #forgetOldProofs() {
    const now = Math.floor(Date.now() / 1000);
    for (const [jti, expiry] of this.#seenProofs) {
      if (expiry < now) this.#seenProofs.delete(jti);
    }
  }

  async handle(req, res) {
    const url = new URL(req.url, this.#origin);
    const resource = Object.entries(this.#resources)
      .find(([prefix]) => url.pathname === prefix || url.pathname.startsWith(`${prefix}/`))?.[1];
    if (!resource) {
      res.writeHead(404).end();
      return;
    }
    const bodyBytes = await readBody(req);
    try {
      const accepted = await this.#authorize(req, url, resource);
      this.#stats.apiAccepted(accepted.scheme);
      res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' });
      res.end(JSON.stringify({ ...accepted, method: req.method, path: url.pathname, body_bytes: bodyBytes }));
    } catch (err) {
      if (!(err instanceof Refusal)) throw err;
      this.#refuse(res, err);
    }
  }

  #refuse(res, refusal) {
    this.#stats.apiRefused(refusal.error ?? 'no_token');
    const challenges = [];
    const algs = `algs=${quoted(PROOF_ALGS.join(' '))}`;
    if (refusal.error === undefined) {
      // No token at all: either scheme will do (RFC 6750 §3.1, RFC 9449 §7.1).
      challenges.push('Bearer realm="api"', `DPoP realm="api", ${algs}`);
    } else {
      const params = [
        'realm="api"',
        `error=${quoted(refusal.error)}`,
        `error_description=${quoted(refusal.message)}`,
      ];
      if (refusal.scheme === 'DPoP') params.push(algs);
      challenges.push(`${refusal.scheme} ${params.join(', ')}`);
    }
    const headers = { 'www-authenticate': challenges, 'cache-control': 'no-store' };
    if (refusal.error === 'use_dpop_nonce') headers['dpop-nonce'] = this.#nonce;
    res.writeHead(401, headers).end();
  }

  async #authorize(req, url, resource) {
    const authorization = req.headers.authorization;
    if (!authorization) throw new Refusal('Bearer', undefined, 'no access token');
    const match = /^(bearer|dpop) ([A-Za-z0-9\-._~+/]+=*)$/i.exec(authorization);
    if (!match) throw new Refusal('Bearer', 'invalid_request', 'malformed Authorization header');
    const scheme = match[1].toLowerCase() === 'dpop' ? 'DPoP' : 'Bearer';
    const value = match[2];

    const token = await this.#provider.AccessToken.find(value)
      ?? await this.#provider.ClientCredentials.find(value);
    if (!token) {
      throw new Refusal(scheme, 'invalid_token', 'the access token is unknown, expired or revoked');
    }
    if (token.aud !== resource) {
      throw new Refusal(scheme, 'invalid_token', 'the access token is for another audience');
    }

    if (token.jkt) {
      if (scheme !== 'DPoP') {
        throw new Refusal('DPoP', 'invalid_token', 'a DPoP-bound access token must be sent with the DPoP scheme');
      }
      await this.#checkProof(req, url, value, token.jkt);
    } else if (scheme === 'DPoP') {
      throw new Refusal('DPoP', 'invalid_token', 'the access token is not DPoP-bound');
    }

    return {
      client_id: token.clientId,
      sub: token.accountId,
      aud: token.aud,
      scope: token.scope,
      scheme,
      jkt: token.jkt,
    };
  }

  /** RFC 9449 §4.3 and §7.1, with the API's own nonce (§9). */
  async #checkProof(req, url, accessToken, jkt) {
    const invalid = (description) => new Refusal('DPoP', 'invalid_dpop_proof', description);
    const proof = req.headers.dpop;
    if (proof === undefined) throw invalid('no DPoP proof');
    if (req.headersDistinct.dpop.length !== 1 || proof.includes(',')) {
      throw invalid('more than one DPoP proof');
    }

    let payload;
    let protectedHeader;
    try {
      ({ payload, protectedHeader } = await jose.jwtVerify(proof, jose.EmbeddedJWK, {
        typ: 'dpop+jwt',
        algorithms: PROOF_ALGS,
        requiredClaims: ['jti', 'htm', 'htu', 'iat'],
        maxTokenAge: `${IAT_WINDOW}s`,
        clockTolerance: IAT_WINDOW,
      }));
    } catch (err) {
      throw invalid(`the proof does not verify: ${err.message}`);
    }

    if (payload.htm !== req.method) throw invalid('htm does not match the request method');
    let htu;
    try {
      htu = new URL(payload.htu);
    } catch {
      throw invalid('htu is not a URL');
    }
    htu.search = '';
    htu.hash = '';
    const target = new URL(url);
    target.search = '';
    target.hash = '';
    if (htu.href !== target.href) throw invalid('htu does not match the request URI');

    const ath = createHash('sha256').update(accessToken).digest('base64url');
    if (payload.ath !== ath) throw invalid('ath does not match the access token');

    if (payload.nonce !== this.#nonce) {
      throw new Refusal('DPoP', 'use_dpop_nonce', 'the API wants its current nonce in the proof');
    }

    if (await jose.calculateJwkThumbprint(protectedHeader.jwk) !== jkt) {
      throw new Refusal('DPoP', 'invalid_token', 'the access token is bound to another key');
    }

    if (this.#seenProofs.has(payload.jti)) throw invalid('the proof was used before');
    this.#seenProofs.set(payload.jti, payload.iat + 2 * IAT_WINDOW);
  }
}
