// The front door of one runtime: every MCP request (POST, GET, DELETE) passes the same short pipeline,
//   observe → cors → origin → admit → read → place → serve
// observe logs and counts the request when its response ends, and renders any refusal; cors answers a browser's
// preflight and marks responses for the origins the runtime lists (nothing without cors.allowedOrigins); origin
// keeps foreign browser pages out (server.allowedOrigins, and this runtime's cors.allowedOrigins); admit names the
// caller (authenticated here, or signed by the cluster peer that authenticated it) within their rate; read parses
// the body and decides its client's era; place asks the cluster, once, whether the request is served on this node
// or forwarded to its owner; serve calls the runtime's endpoint.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { ClusterNode } from '../cluster/node.js';
import type { ForwardClaims } from '../cluster/forwarded.js';
import { methodLabel, type Metrics } from '../observe/metrics.js';
import type { HostedRuntime } from '../runtime/hosted-runtime.js';
import type { Principal, ResourceInfo } from '../security/auth.js';
import { logId } from '../session/launch.js';
import { RuntimeSessions } from '../session/runtime-session.js';
import { classifyBodiless } from '../wire/era.js';
import { FORWARDED_HEADER, header, RUNTIME_SESSION_HEADER } from '../wire/headers.js';
import { HttpError } from '../wire/http-error.js';
import { describeParsed, inboundPost, type InboundPost } from '../wire/inbound.js';
import { ErrorCode } from '../wire/jsonrpc.js';
import { checkOrigin, checkPostHeaders, parseMessages, readBody, sessionIdOf, wire2025 } from '../wire/streamable-http.js';
import { wire2026 } from '../wire/streamable-http-2026.js';
import { Admission } from './admission.js';
import { compose } from './compose.js';
import { CorsPolicy, corsStep } from './cors.js';

/** One request on its way through the pipeline; each step fills in what it learned. */
interface Turn {
  req: IncomingMessage;
  res: ServerResponse;
  /** The runtime session the URL or a header names, as the router found it (not yet checked). */
  named?: string;
  principal?: Principal;
  /** A cluster peer admitted the request and forwarded it here. */
  forwarded?: ForwardClaims;
  post?: InboundPost;
  /** The runtime session the request names, checked (2026 requests and DELETE only). */
  runtimeSession?: string;
  /** What its log line says. */
  seen: { method: string; id?: unknown };
}

export interface FrontDoorOptions {
  allowedOrigins: readonly string[];
  resource: ResourceInfo;
  log: Logger;
  metrics?: Metrics;
  cluster?: ClusterNode;
}

export class FrontDoor {
  private readonly admission: Admission;
  /** What a browser may do here; the router marks its own refusals of this runtime's requests with it too. */
  readonly cors: CorsPolicy;
  private readonly log: Logger;
  private readonly pipeline: (t: Turn) => Promise<void>;

  constructor(
    readonly runtime: HostedRuntime,
    private readonly o: FrontDoorOptions,
  ) {
    this.admission = new Admission(runtime.name, runtime.config, o.resource, o.metrics);
    this.log = o.log.child({ runtime: runtime.name });
    this.cors = new CorsPolicy(runtime.config.cors, runtime.config.forwardHeaders);
    // An origin whose pages may call this runtime is no foreign page here: the two lists agree by construction.
    const origins = [...o.allowedOrigins, ...runtime.config.cors.allowedOrigins];
    this.pipeline = compose<Turn>(
      (t, next) => this.observe(t, next),
      corsStep(this.cors),
      (t, next) => (checkOrigin(t.req, origins), next()),
      (t, next) => this.admit(t, next),
      (t, next) => this.read(t, next),
      (t, next) => this.place(t, next),
      (t) => this.serve(t),
    );
  }

  /** Serves one request; `named` is the runtime session its URL or headers name. */
  handle(req: IncomingMessage, res: ServerResponse, named?: string): Promise<void> {
    return this.pipeline({ req, res, named, seen: { method: req.method ?? 'UNKNOWN' } });
  }

  /** One log line and one sample per request, when its response ends (a streamed call: at its result). */
  private async observe(t: Turn, next: () => Promise<void>): Promise<void> {
    const started = performance.now();
    const { metrics } = this.o;
    const runtime = this.runtime.name;
    t.res.once('close', () => {
      const seconds = (performance.now() - started) / 1000;
      const status = t.res.headersSent ? t.res.statusCode : 499; // 499: the client left before any answer
      const method = methodLabel(t.seen.method);
      metrics?.requests.inc({ runtime, method, status: String(status) });
      metrics?.requestSeconds.observe({ runtime, method }, seconds);
      const sid = sessionIdOf(t.req);
      this.log.info(
        {
          session: sid === undefined ? undefined : logId(sid),
          id: t.seen.id,
          method: t.seen.method,
          status,
          ms: Math.round(seconds * 1000),
          principal: t.principal?.subject,
        },
        'request',
      );
    });
    try {
      await next();
    } catch (e) {
      if (!(e instanceof HttpError)) this.log.error({ err: e }, 'request failed');
      HttpError.from(e).send(t.res);
    }
  }

  /**
   * The caller: a peer's signed forward carries the principal it authenticated (a client never sends the header:
   * refused 403, and a forwarded request is never forwarded again); anyone else is authenticated here.
   */
  private async admit(t: Turn, next: () => Promise<void>): Promise<void> {
    const cluster = this.o.cluster;
    // The peer signed the runtime session it sent as Berth-Runtime-Session (and only that one): checked against it.
    if (cluster && t.req.headers[FORWARDED_HEADER] !== undefined)
      t.forwarded = cluster.accept(t.req, this.runtime.name, header(t.req, RUNTIME_SESSION_HEADER));
    t.principal = t.forwarded ? t.forwarded.p : await this.admission.admit(t.req);
    return next();
  }

  /** The request as its era's wire rules read it; a forwarded body must be the one its peer signed. */
  private async read(t: Turn, next: () => Promise<void>): Promise<void> {
    const { req } = t;
    const bodiless = () => (classifyBodiless(req) === '2026' ? wire2026 : wire2025).checkOther(req);
    switch (req.method) {
      case 'POST': {
        checkPostHeaders(req);
        const { maxBodySize, bodyTimeout } = this.runtime.config.limits;
        const body = await readBody(req, maxBodySize, bodyTimeout);
        const parsed = parseMessages(body);
        t.seen = describeParsed(parsed);
        // A peer's forwarded request was counted by the node that admitted it.
        if (!t.forwarded) this.admission.admitBatch(t.principal!, parsed);
        const post = inboundPost(req, body, parsed);
        if (t.forwarded) this.o.cluster!.acceptBody(t.forwarded, post);
        if ('request' in post) t.runtimeSession = RuntimeSessions.idOf(t.named, post.request.id);
        t.post = post;
        break;
      }
      case 'GET':
        bodiless();
        break;
      case 'DELETE':
        // DELETE naming a runtime session ends it whatever the era header says.
        t.runtimeSession = RuntimeSessions.idOf(t.named, null);
        if (t.runtimeSession === undefined) bodiless();
        break;
      default:
        throw new HttpError(405, ErrorCode.ServerError, `Method Not Allowed: ${req.method} (use POST, GET or DELETE)`, {
          headers: { allow: 'GET, POST, DELETE' },
        });
    }
    return next();
  }

  /** The one question to the cluster: is this request served here? (A forwarded one always is.) */
  private async place(t: Turn, next: () => Promise<void>): Promise<void> {
    const cluster = this.o.cluster;
    if (!cluster || t.forwarded) return next(); // the common case: nothing to ask, nothing to build
    const call = {
      runtime: this.runtime.name,
      config: this.runtime.config,
      headersWithin: this.runtime.headersWithin,
      principal: t.principal!,
      post: t.post,
      runtimeSession: t.runtimeSession,
    };
    if (await cluster.decide(t.req, t.res, call)) return;
    return next();
  }

  private async serve({ req, res, principal, post, runtimeSession }: Turn): Promise<void> {
    if (!post)
      return req.method === 'GET' ? this.runtime.get(req, res, principal!) : this.runtime.delete(req, res, principal!, runtimeSession);
    if (post.clientEra === '2025') return this.runtime.post2025(req, res, { ...post, principal: principal! });
    if (!('request' in post)) return void res.writeHead(202).end(); // a 2026 notification: none is defined on HTTP
    return this.runtime.post2026(req, res, { ...post, principal: principal!, runtimeSession });
  }
}
