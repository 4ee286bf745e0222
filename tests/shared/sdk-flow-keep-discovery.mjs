// tests/e2e/sdk-flow.mjs with a client that keeps what it discovered
// between starting the authorization and exchanging the code, as the MCP
// SDK's discoveryState()/saveDiscoveryState() let a client do (and as one
// must across a browser redirect).  sdk-flow.mjs exchanges the code on a
// new transport: a client that forgets the challenge then rediscovers from
// the MCP URL alone, at the host's /.well-known/, which on a ~user site is
// not the user's (doc/shared-hosting.md).
//
//   node sdk-flow-keep-discovery.mjs MCP_URL USER PASSWORD
import { HeadlessProvider } from "../e2e/oauth.mjs";

HeadlessProvider.prototype.discoveryState = function () { return this.discovery; };
HeadlessProvider.prototype.saveDiscoveryState = function (state) { this.discovery = state; };
await import("../e2e/sdk-flow.mjs");
