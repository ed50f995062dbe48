import type { ServerResponse } from 'node:http';

/** Writes Server-Sent Events on one HTTP response; knows whether the peer is still there. */
export class SseWriter {
  private closed = false;
  private counter = 0;

  constructor(
    private readonly res: ServerResponse,
    private readonly streamId: string,
    headers: Record<string, string> = {},
  ) {
    res.writeHead(200, {
      ...headers,
      'content-type': 'text/event-stream',
      'cache-control': 'no-cache, no-transform',
      connection: 'keep-alive',
      // Disable proxy buffering (nginx) so events reach the client as they are written.
      'x-accel-buffering': 'no',
    });
    res.flushHeaders();
    res.on('close', () => {
      this.closed = true;
    });
  }

  get isOpen(): boolean {
    return !this.closed && !this.res.destroyed && !this.res.writableEnded;
  }

  /** Sends one JSON-RPC message as a `message` event; returns false when the peer is gone. */
  send(message: unknown): boolean {
    if (!this.isOpen) return false;
    const id = `${this.streamId}:${++this.counter}`;
    this.res.write(`id: ${id}\nevent: message\ndata: ${JSON.stringify(message)}\n\n`);
    return true;
  }

  comment(text: string): void {
    if (this.isOpen) this.res.write(`: ${text}\n\n`);
  }

  end(): void {
    if (!this.closed && !this.res.writableEnded) this.res.end();
    this.closed = true;
  }
}
