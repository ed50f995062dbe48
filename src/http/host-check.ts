// Which names berth answers to (the Host header): DNS-rebinding protection for every path berth serves.
// Why: a web page whose name the attacker re-points at 127.0.0.1 is, to the browser, the same origin as berth on
// loopback. Its GETs carry no Origin header, so the Origin check (streamable-http.ts) cannot see them: without this,
// such a page reads /metrics and /healthz (runtime names, session counts) and can try every path. Its requests do
// carry the attacker's name as Host, which a client of berth's own never sends.
// Policy (server.allowedHosts): "auto" (the default) allows, when berth listens on a loopback address, the loopback
// names (localhost, *.localhost, 127.0.0.0/8, [::1]) and the hosts of server.publicUrl and cluster.advertiseUrl; on
// any other address, every name (rebinding aims at loopback; a reachable address is reached directly anyway).
// "loopback" and exact names can be listed; "*" turns the check off. The address berth listens on and publicUrl's
// host are always allowed. A request without Host (HTTP/1.0) is not judged: every browser sends one.
import type { IncomingMessage } from 'node:http';
import { HttpError } from '../wire/http-error.js';
import { ErrorCode } from '../wire/jsonrpc.js';

/** localhost, *.localhost, 127.0.0.0/8, ::1 in its forms (bracketed or not, written out, IPv4-mapped 127/8). */
export function isLoopbackName(host: string): boolean {
  const h = host
    .toLowerCase()
    .replace(/\.$/, '')
    .replace(/^\[(.*)\]$/, '$1');
  return (
    h === 'localhost' ||
    h.endsWith('.localhost') ||
    /^127\.\d+\.\d+\.\d+$/.test(h) ||
    /^(0{0,4}:){2,7}0{0,3}1$/.test(h) ||
    /^(0{0,4}:){2,5}ffff:127\.\d+\.\d+\.\d+$/.test(h)
  );
}

/** The name in a Host header, without its port, lower-cased: `[::1]:8787` → `[::1]`, `Example.COM.:80` → `example.com`. */
export function hostName(header: string): string {
  const h = header.trim().toLowerCase();
  const name = h.startsWith('[') ? h.slice(0, h.indexOf(']') + 1) : h.split(':')[0]!;
  return name.replace(/\.$/, '');
}

/** A name as configured (an address berth listens on, an allowedHosts entry): a bare IPv6 address is bracketed. */
function configuredName(name: string): string {
  const bareV6 = !name.startsWith('[') && (name.match(/:/g)?.length ?? 0) >= 2;
  return hostName(bareV6 ? `[${name}]` : name);
}

export interface HostPolicyInput {
  allowedHosts: readonly string[];
  /** The address berth listens on (server.host). */
  listen: string;
  /** server.publicUrl, cluster.advertiseUrl: their hosts are names clients and peers use. */
  urls: ReadonlyArray<string | undefined>;
}

/** Throws 403 for a request whose Host names none of the allowed hosts. */
export function hostCheck(o: HostPolicyInput): (req: IncomingMessage) => void {
  const list = o.allowedHosts.map((h) => h.toLowerCase());
  const auto = list.includes('auto');
  // An IPv6 listening address comes bare (::1); as a Host it is bracketed.
  const listen = configuredName(o.listen);
  if (list.includes('*') || (auto && !isLoopbackName(listen))) return () => undefined;
  const loopback = auto || list.includes('loopback');
  const names = new Set(
    [...list, listen, ...o.urls.map((u) => (u ? new URL(u).host : undefined))]
      .filter((h): h is string => h !== undefined && h !== 'auto' && h !== 'loopback')
      .map(configuredName)
      .filter((h) => h !== ''),
  );
  return (req) => {
    const host = req.headers.host;
    if (host === undefined) return;
    const name = hostName(host);
    if (names.has(name) || (loopback && isLoopbackName(name))) return;
    throw new HttpError(
      403,
      ErrorCode.ServerError,
      `Forbidden: Host ${JSON.stringify(host)} is not a name berth answers to (server.allowedHosts: ${o.allowedHosts.join(', ')}; berth listens on ${o.listen}, where "auto" allows loopback names and the hosts of server.publicUrl and cluster.advertiseUrl). A client reaching berth by that name needs it in server.allowedHosts or as server.publicUrl`,
    );
  };
}
