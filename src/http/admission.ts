// Who is calling a runtime, within their request rate: authentication (401/403 when nobody acceptable), then one
// token of the principal's rate per HTTP request (429), and for a batch one per further message, all or none.
import type { IncomingMessage } from 'node:http';
import type { RuntimeConfig } from '../config/schema.js';
import type { Metrics } from '../observe/metrics.js';
import { createAuthenticator, principalKey, type Authenticator, type Principal, type ResourceInfo } from '../security/auth.js';
import { RateLimiter } from '../security/quota.js';
import { HttpError } from '../wire/http-error.js';
import type { ParsedBody } from '../wire/jsonrpc.js';
import { ErrorCode } from '../wire/jsonrpc.js';

export class Admission {
  private readonly auth: Authenticator;
  private readonly limiter: RateLimiter;

  constructor(
    private readonly runtime: string,
    private readonly config: RuntimeConfig,
    resource: ResourceInfo,
    private readonly metrics?: Metrics,
  ) {
    this.auth = createAuthenticator(config.auth, resource);
    this.limiter = new RateLimiter(config.limits.requestsPerSecond, config.limits.requestBurst);
  }

  /** The caller, before any body is read. */
  async admit(req: IncomingMessage): Promise<Principal> {
    const principal = await this.auth.authenticate(req);
    if (principal.kind === 'anonymous') return principal;
    const wait = this.limiter.take(principalKey(principal));
    if (wait > 0) {
      this.metrics?.rateLimited.inc({ runtime: this.runtime });
      const { requestsPerSecond, requestBurst } = this.config.limits;
      throw new HttpError(
        429,
        ErrorCode.ServerError,
        `Too Many Requests: more than ${requestsPerSecond} requests per second (limits.requestsPerSecond, burst ${requestBurst})`,
        {
          headers: { 'retry-after': String(Math.max(1, Math.ceil(wait))) },
        },
      );
    }
    return principal;
  }

  /**
   * A batch counts one call per message: its HTTP request took one token in admit(), the rest are taken here, all
   * or none. A batch over what is left is refused whole (429 with Retry-After), one larger than the burst always
   * (no Retry-After: waiting would not help) — nothing of it reaches the server.
   */
  admitBatch(principal: Principal, parsed: ParsedBody): void {
    if (!parsed.batch || principal.kind === 'anonymous' || parsed.messages.length < 2) return;
    const n = parsed.messages.length;
    const { requestsPerSecond, requestBurst } = this.config.limits;
    const wait = n > requestBurst ? Infinity : this.limiter.take(principalKey(principal), n - 1);
    if (wait === 0) return;
    this.metrics?.rateLimited.inc({ runtime: this.runtime }, n);
    if (wait === Infinity) {
      throw new HttpError(
        429,
        ErrorCode.ServerError,
        `Too Many Requests: a batch of ${n} calls is more than the ${requestBurst} a principal may send at once (limits.requestBurst); send smaller batches`,
      );
    }
    throw new HttpError(
      429,
      ErrorCode.ServerError,
      `Too Many Requests: a batch of ${n} calls is over what is left of ${requestsPerSecond} calls per second (limits.requestsPerSecond, burst ${requestBurst}); it was refused whole`,
      { headers: { 'retry-after': String(Math.max(1, Math.ceil(wait))) } },
    );
  }
}
