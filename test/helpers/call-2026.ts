// One raw tools/call of a 2026-07-28 client (no SDK): its headers and _meta set by hand, so a test can send a retry's
// inputResponses and requestState, forged ones included, and read the status and headers berth answers with.
import { ACCEPT_BOTH } from './berth.ts';

const MODERN = '2026-07-28';

export async function call2026(
  url: string,
  headers: Record<string, string>,
  id: number,
  name: string,
  args: Record<string, unknown>,
  extra: Record<string, unknown> = {},
  caps: Record<string, unknown> = { elicitation: { form: {} } },
) {
  const body = {
    jsonrpc: '2.0',
    id,
    method: 'tools/call',
    params: {
      name,
      arguments: args,
      ...extra,
      // extra._meta adds to the era's own fields (a logLevel, say); it does not replace them.
      _meta: {
        'io.modelcontextprotocol/protocolVersion': MODERN,
        'io.modelcontextprotocol/clientCapabilities': caps,
        ...(extra._meta as Record<string, unknown> | undefined),
      },
    },
  };
  const r = await fetch(url, {
    method: 'POST',
    headers: {
      accept: ACCEPT_BOTH,
      'content-type': 'application/json',
      'mcp-protocol-version': MODERN,
      'mcp-method': 'tools/call',
      'mcp-name': name,
      ...headers,
    },
    body: JSON.stringify(body),
  });
  const text = await r.text();
  const json = text.startsWith('{') ? JSON.parse(text) : JSON.parse(/data: (.*)\n\n$/.exec(text)![1]!);
  return { status: r.status, headers: r.headers, body: json, text };
}
