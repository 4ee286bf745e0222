// An authorization server that is not mcpauth's: the npm "oidc-provider"
// (panva/node-oidc-provider), configured just enough to mint access tokens
// headlessly for the end-to-end tests of mcpauth's token validation.
//
//   node oidc-provider-server.mjs PORT RESOURCE_A RESOURCE_B [RESOURCE_C [RESOURCE_D...]]
//
// Issuer: http://127.0.0.1:PORT, exactly (no trailing slash).  It serves
// the same metadata at /.well-known/oauth-authorization-server and
// /.well-known/openid-configuration, its key set at /jwks, tokens at
// /token, RFC 7662 introspection at /token/introspection and RFC 7009
// revocation at /token/revocation (oidc-provider's default routes).
//
// Access tokens for RESOURCE_A, RESOURCE_B and any RESOURCE_D... are RFC 9068
// JWTs (typ at+jwt, RS256, aud = the resource URI as requested, scope limited
// to files:read); for RESOURCE_C they are opaque and can only be checked by
// introspection.
//
// Clients (static, confidential, client_secret_basic or _post):
//   tester / tester-secret  client_credentials grant, scope files:read
//   gate   / gate-secret    no grants: the identity mcpauth introspects with
//
// Mint a token:
//   curl -u tester:tester-secret -d grant_type=client_credentials \
//        -d scope=files:read -d resource=RESOURCE_A http://127.0.0.1:PORT/token
//
// Prints "listening" when ready.  State is in memory only.
import { generateKeyPairSync } from "node:crypto";
import Provider from "oidc-provider";

const [port, ...resources] = process.argv.slice(2);
if (!port || resources.length < 2) {
  console.error("usage: node oidc-provider-server.mjs PORT RESOURCE_A RESOURCE_B [RESOURCE_C [RESOURCE_D...]]");
  process.exit(2);
}
const [resourceA, resourceB, resourceC, ...moreJwt] = resources;
const issuer = `http://127.0.0.1:${port}`;

// A fresh RSA signing key per run.  Without `jwks` oidc-provider would sign
// with a development key published in its source; RS256 is also in
// mcpauth's default jwt_algorithms (RS256 ES256).  oidc-provider derives
// the kid (RFC 7638 thumbprint) itself.
const { privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
const signingKey = { ...privateKey.export({ format: "jwk" }), use: "sig", alg: "RS256" };

const provider = new Provider(issuer, {
  // `clients`: static client registrations.  Empty redirect_uris and
  // response_types mean no browser flows at all.
  clients: [
    {
      client_id: "tester",
      client_secret: "tester-secret",
      grant_types: ["client_credentials"],
      redirect_uris: [],
      response_types: [],
      scope: "files:read", // the scopes this client may request
    },
    {
      client_id: "gate",
      client_secret: "gate-secret",
      grant_types: [],
      redirect_uris: [],
      response_types: [],
    },
  ],
  // `jwks`: the private keys the provider signs with; their public halves
  // are served at /jwks.
  jwks: { keys: [signingKey] },
  // `scopes`: scope values the provider knows besides openid and
  // offline_access.
  scopes: ["files:read"],
  features: {
    // The login and consent pages for development: not used here.
    devInteractions: { enabled: false },
    // grant_type=client_credentials at the token endpoint (RFC 6749 §4.4).
    clientCredentials: { enabled: true },
    // RFC 7662 at /token/introspection.  The default allowedPolicy lets any
    // authenticated confidential client (here "gate") introspect any token.
    // JWT access tokens are refused there ("Structured JWT Tokens cannot be
    // introspected"): only opaque ones can be.
    introspection: { enabled: true },
    // RFC 7009 at /token/revocation; a client may revoke its own tokens.
    revocation: { enabled: true },
    // RFC 8707 resource indicators.  With resource=URI the access token is
    // issued for that resource server: getResourceServerInfo describes it
    // (an unknown URI throws invalid_target), its `audience` becomes the
    // token's aud, its `scope` caps the token's scope, and
    // accessTokenFormat chooses a JWT or an opaque token.  defaultResource
    // returns nothing, so a request without resource gets an opaque token
    // without audience.
    resourceIndicators: {
      enabled: true,
      defaultResource: () => undefined,
      getResourceServerInfo: (ctx, resource) => {
        if (resource === resourceA || resource === resourceB || moreJwt.includes(resource))
          return { audience: resource, scope: "files:read", accessTokenFormat: "jwt", accessTokenTTL: 600 };
        if (resourceC && resource === resourceC)
          return { audience: resource, scope: "files:read", accessTokenFormat: "opaque", accessTokenTTL: 600 };
        throw new Provider.errors.InvalidTarget();
      },
    },
  },
});

// oidc-provider is built on Koa and listens through node's http server.
provider.listen(Number(port), "127.0.0.1", () => console.log("listening"));
