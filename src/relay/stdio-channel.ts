// Newline-delimited JSON-RPC over a server's stdin/stdout (the MCP stdio transport).
import { EventEmitter } from 'node:events';
import type { Readable, Writable } from 'node:stream';
import { invalidMessageReason, type JsonRpcMessage } from '../wire/jsonrpc.js';

export interface StdioChannelEvents {
  message: [JsonRpcMessage];
  /** A line that is not a JSON-RPC message (servers sometimes print logs to stdout): its start, why, its length. */
  invalid: [line: string, reason: string, bytes: number];
  /** The server sent a line longer than the limit; nothing more is read from it. */
  overflow: [bytes: number];
}

export class StdioChannel extends EventEmitter<StdioChannelEvents> {
  private chunks: Buffer[] = [];
  private pending = 0;
  private stopped = false;
  private writable = true;
  /**
   * Why nothing more is read, once a line went over the limit: what the pending calls and the session's end say,
   * rather than the SIGKILL that stopping such a server takes.
   */
  overflowed: string | undefined;
  bytesIn = 0;
  bytesOut = 0;
  /** Told of every chunk read from the server (out of it) and every message written to it (in). */
  onBytes: ((direction: 'in' | 'out', n: number) => void) | undefined;

  constructor(
    private readonly input: Writable,
    private readonly output: Readable,
    /** Longest message accepted from the server: a hostile one must not make berth buffer without bound. */
    private readonly maxLineBytes = 64 * 1024 * 1024,
    /** Most bytes that may wait in berth for the server to read them (limits.inputBacklog); see `backlogged`. */
    private readonly maxBacklog = 4 * 1024 * 1024,
  ) {
    super();
    output.on('data', (chunk: Buffer) => this.onData(chunk));
    input.on('error', () => {
      this.writable = false; // EPIPE once the server is gone; the session's exit handling reports it
    });
  }

  private onData(chunk: Buffer): void {
    if (this.stopped) return;
    this.bytesIn += chunk.length;
    this.onBytes?.('out', chunk.length);
    let start = 0;
    let nl = chunk.indexOf(0x0a, start);
    while (nl !== -1) {
      const tail = chunk.subarray(start, nl);
      const line = this.chunks.length ? Buffer.concat([...this.chunks, tail]) : tail;
      this.chunks = [];
      this.pending = 0;
      this.onLine(line);
      start = nl + 1;
      nl = chunk.indexOf(0x0a, start);
    }
    if (start < chunk.length) {
      this.chunks.push(chunk.subarray(start));
      this.pending += chunk.length - start;
      if (this.pending > this.maxLineBytes) {
        this.stopped = true;
        this.chunks = [];
        this.overflowed = `the server sent a message larger than maxMessageSize (${mib(this.maxLineBytes)}); berth stopped it`;
        this.output.destroy();
        this.emit('overflow', this.pending);
      }
    }
  }

  private onLine(bytes: Buffer): void {
    let i = 0;
    while (i < bytes.length && (bytes[i] === 0x20 || bytes[i] === 0x09 || bytes[i] === 0x0d)) i++;
    if (i === bytes.length) return;
    // Not JSON at all (a log line on stdout): judged by its first byte, never decoded whole — a server flooding
    // stdout with text must cost berth next to nothing per line.
    if (bytes[i] !== 0x7b && bytes[i] !== 0x5b) {
      this.emit('invalid', bytes.subarray(0, 256).toString('utf8'), 'not JSON', bytes.length);
      return;
    }
    const line = bytes.toString('utf8');
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch {
      this.emit('invalid', line.slice(0, 256), 'not JSON', bytes.length);
      return;
    }
    const why = invalidMessageReason(value);
    if (why) this.emit('invalid', line.slice(0, 256), why, bytes.length);
    else this.emit('message', value as JsonRpcMessage);
  }

  /**
   * Why the server takes no more client messages now, if it does not: a pipe holds 64 KiB, and what the server has
   * not read past that waits in berth's memory, not the session's. A server that stops reading (hostile, or stuck in
   * a long synchronous tool) would otherwise let its client grow berth without bound, 202 after 202.
   */
  get backlogged(): string | undefined {
    const unread = this.input.writableLength;
    if (unread <= this.maxBacklog) return undefined;
    return `the server has not read ${(unread / 1048576).toFixed(1)} MiB of earlier messages from its stdin, more than limits.inputBacklog (${mib(this.maxBacklog)}); try again once it has`;
  }

  /** Writes one message; returns false when the server can no longer be written to. */
  send(message: JsonRpcMessage): boolean {
    if (!this.writable || this.input.destroyed || this.input.writableEnded) return false;
    const data = JSON.stringify(message) + '\n';
    this.bytesOut += data.length;
    this.onBytes?.('in', data.length);
    this.input.write(data);
    return true;
  }
}

/** A byte count as the config would write it: whole MiB or KiB when it is one, else bytes. */
function mib(n: number): string {
  if (n % 1048576 === 0) return `${n / 1048576} MiB`;
  if (n % 1024 === 0) return `${n / 1024} KiB`;
  return `${n} bytes`;
}
