// OAuth 2.0 Protected Resource Metadata (RFC 9728), as the MCP authorization spec asks of a resource server:
// where a client learns which authorization server issues tokens for a runtime.
import type { HostedRuntime } from '../runtime/hosted-runtime.js';

export const METADATA_PREFIX = '/.well-known/oauth-protected-resource';

/** Paths a runtime answers on: /mcp for the default runtime, /runtimes/NAME/mcp for every one. */
export function runtimePaths(name: string, isDefault: boolean): string[] {
  return isDefault ? ['/mcp', `/runtimes/${encodeURIComponent(name)}/mcp`] : [`/runtimes/${encodeURIComponent(name)}/mcp`];
}

export function protectedResourceMetadata(rt: HostedRuntime, resource: string): Record<string, unknown> | undefined {
  const auth = rt.config.auth;
  if (auth.kind === 'none') return undefined;
  return {
    resource,
    ...(auth.kind === 'jwt' ? { authorization_servers: [auth.issuer], scopes_supported: auth.scopes } : {}),
    bearer_methods_supported: ['header'],
    resource_name: `berth runtime ${rt.name}`,
  };
}
