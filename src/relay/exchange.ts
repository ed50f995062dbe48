// One client POST and its response: plain JSON when the server answers with nothing before the result,
// upgraded to an SSE stream as soon as a related message (progress, elicitation, ...) must go out first.
import type { ServerResponse } from 'node:http';
import { randomBytes } from 'node:crypto';
import { SseWriter } from '../wire/sse.js';
import type { JsonRpcMessage, JsonRpcResponse } from '../wire/jsonrpc.js';

export class Exchange {
  private readonly outstanding = new Set<string>();
  private readonly responses: JsonRpcResponse[] = [];
  private sse: SseWriter | undefined;
  private finished = false;
  private clientGone = false;
  private id: string | undefined;

  /** Sees each final response before it is written; may still change `headers` while the response is JSON. */
  beforeRespond: ((message: JsonRpcResponse) => void) | undefined;

  constructor(
    private readonly res: ServerResponse,
    private readonly batch: boolean,
    readonly headers: Record<string, string> = {},
  ) {
    res.on('close', () => {
      if (!res.writableFinished) this.clientGone = true;
    });
  }

  /** Names this exchange's SSE stream (and keys stateless clients' ids); made only when first needed. */
  get streamId(): string {
    return (this.id ??= randomBytes(9).toString('base64url'));
  }

  /** True while a message written here can still reach the client. */
  get open(): boolean {
    return !this.finished && !this.clientGone && !this.res.destroyed;
  }

  expect(key: string): void {
    this.outstanding.add(key);
  }

  /** A message related to this POST's request(s), sent before the final response. */
  deliver(message: JsonRpcMessage): boolean {
    if (!this.open) return false;
    if (!this.sse) {
      this.sse = new SseWriter(this.res, this.streamId, this.headers);
      // Batch responses that came while this was still plain JSON go first.
      for (const r of this.responses.splice(0)) this.sse.send(r);
    }
    return this.sse.send(message);
  }

  /** The final response to one of the requests in this POST; ends the HTTP response after the last one. */
  respond(key: string, message: JsonRpcResponse): boolean {
    if (!this.outstanding.delete(key)) return false;
    const delivered = this.open;
    this.beforeRespond?.(message);
    if (this.sse) this.sse.send(message);
    else this.responses.push(message);
    if (this.outstanding.size === 0) this.finish();
    return delivered;
  }

  private finish(): void {
    if (this.finished) return;
    this.finished = true;
    if (this.sse) {
      this.sse.end();
      return;
    }
    if (this.clientGone || this.res.destroyed) return;
    const body = JSON.stringify(this.batch ? this.responses : this.responses[0]);
    this.res.writeHead(200, { ...this.headers, 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    this.res.end(body);
  }
}
