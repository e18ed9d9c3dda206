// A real OAuth 2.0 authorization server (panva's oidc-provider, OpenID Certified) and a
// protected API, on loopback, for tower-bearer's interop tests.
//
// Started by tests/common/oidc_provider.rs with its configuration as JSON in the
// OIDC_FIXTURE_CONFIG environment variable:
//
//   {
//     "access_token_ttl": 60,          seconds, for client-credentials and access tokens
//     "refresh_token_ttl": 86400,      seconds
//     "require_dpop": false,           every client must use DPoP (dpop_bound_access_tokens)
//     "api_nonce_ttl": 0,              seconds between the API's DPoP nonce rotations, 0: never
//     "clients": [ { "client_id", "token_endpoint_auth_method",
//                    "client_secret"?,                           for the client_secret_* methods
//                    "private_key"?, "kid"?, "alg"? } ]          a PEM path, for private_key_jwt
//   }
//
// It listens on two free loopback ports, the issuer's and the API's (another origin, as a real
// resource server is), then prints one line on stdout:
//
//   READY {"issuer":"http://127.0.0.1:…","api_origin":"http://127.0.0.1:…","resources":{…}}
//
// and exits when its stdin closes, so that it never outlives the test process that started it.

import { createServer } from 'node:http';
import { once } from 'node:events';

import { Api } from './api.mjs';
import { Fixture } from './fixture.mjs';
import { createProvider, loadClientKey } from './provider.mjs';
import { Stats } from './stats.mjs';

async function listen(server) {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return `http://127.0.0.1:${server.address().port}`;
}

function failed(res, err) {
  console.error(err);
  if (!res.headersSent) res.writeHead(500);
  res.end();
}

const config = {
  access_token_ttl: 60,
  refresh_token_ttl: 86400,
  require_dpop: false,
  api_nonce_ttl: 0,
  ...JSON.parse(process.env.OIDC_FIXTURE_CONFIG ?? '{}'),
};
const clients = (config.clients ?? []).map((client) => (client.private_key
  ? { ...client, key: loadClientKey(client) }
  : client));

// Listen first: the issuer's URL holds the port.
const issuerServer = createServer();
const apiServer = createServer();
const issuer = await listen(issuerServer);
const apiOrigin = await listen(apiServer);
const resources = { '/api': `${apiOrigin}/api`, '/other': `${apiOrigin}/other` };

const stats = new Stats();
const provider = await createProvider({
  issuer, config, clients, resources: Object.values(resources),
});
stats.watch(provider);
provider.on('server_error', (ctx, err) => console.error('oidc-provider server_error', err));

const api = new Api({
  provider, origin: apiOrigin, resources, stats, nonceTtl: config.api_nonce_ttl,
});
const fixture = new Fixture({
  provider, issuer, clients, api, stats, requireDpop: config.require_dpop,
});
const oidc = provider.callback();

issuerServer.on('request', async (req, res) => {
  stats.issuerRequest(req);
  try {
    if (!await fixture.handle(req, res)) oidc(req, res);
  } catch (err) {
    failed(res, err);
  }
});
apiServer.on('request', (req, res) => {
  api.handle(req, res).catch((err) => failed(res, err));
});

process.stdin.on('end', () => process.exit(0));
process.stdin.on('error', () => process.exit(0));
process.stdin.resume();

process.stdout.write(`READY ${JSON.stringify({
  issuer,
  api_origin: apiOrigin,
  resources: { api: resources['/api'], other: resources['/other'] },
})}\n`);
