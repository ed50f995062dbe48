// Newline-delimited JSON-RPC over a server's stdin/stdout (the MCP stdio transport).
import { EventEmitter } from 'node:events';
import type { Readable, Writable } from 'node:stream';
import { invalidMessageReason, type JsonRpcMessage } from '../wire/jsonrpc.js';
import { keepBytes } from '../wire/raw-json.js';
import { JsonLines, type Line } from './json-lines.js';
import { Pacer } from '../util/pacer.js';
import { sizeInWords } from '../util/units.js';

export interface StdioChannelEvents {
  message: [JsonRpcMessage];
  /** A line that is not a JSON-RPC message (servers sometimes print logs to stdout): its start, why, its length. */
  invalid: [line: string, reason: string, bytes: number];
  /** The server sent a line longer than the limit; nothing more is read from it. */
  overflow: [bytes: number];
  /** The server's output had its share of berth's main thread (outputTime): nothing is read from it for `ms`. */
  paced: [ms: number];
}

export interface StdioChannelOptions {
  /** Longest message accepted from the server: a hostile one must not make berth buffer without bound. */
  maxLineBytes?: number;
  /** Most bytes that may wait in berth for the server to read them (limits.inputBacklog); see `backlogged`. */
  maxBacklog?: number;
  /** ms of berth's main thread per second the server's output may take on average (limits.outputTime); 0: any. */
  outputTime?: number;
  /** ms it may take at once before outputTime applies (limits.outputTimeBurst). */
  outputTimeBurst?: number;
}

export class StdioChannel extends EventEmitter<StdioChannelEvents> {
  private readonly lines = new JsonLines((line) => this.onLine(line));
  private stopped = false;
  /** Not reading for a while: the output had its share (outputTime). */
  private resting = false;
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

  private readonly maxLineBytes: number;
  private readonly maxBacklog: number;
  private readonly pacer: Pacer;

  constructor(
    private readonly input: Writable,
    private readonly output: Readable,
    o: StdioChannelOptions = {},
  ) {
    super();
    this.maxLineBytes = o.maxLineBytes ?? 64 * 1024 * 1024;
    this.maxBacklog = o.maxBacklog ?? 4 * 1024 * 1024;
    // outputTime is ms per second: the pacer's rate, in the same ms it is told of.
    this.pacer = new Pacer(o.outputTime ?? 0, o.outputTimeBurst ?? 0);
    output.on('data', (chunk: Buffer) => this.onData(chunk));
    input.on('error', () => {
      this.writable = false; // EPIPE once the server is gone; the session's exit handling reports it
    });
  }

  private onData(chunk: Buffer): void {
    if (this.stopped) return;
    // Node resumes a child's stdout when the child exits (to flush it), pause or not: still resting, pause again,
    // so a process still holding the pipe (a grandchild) cannot write at full speed until the pause ends.
    if (this.resting) this.output.pause();
    const start = performance.now();
    this.bytesIn += chunk.length;
    this.onBytes?.('out', chunk.length);
    this.lines.push(chunk);
    const spent = performance.now() - start;
    const pause = this.pacer.add(spent);
    if (pause > 0 && !this.stopped && !this.resting) {
      // This server's output has had its share of berth's main thread: the rest waits in its pipe for a while.
      this.resting = true;
      this.output.pause();
      setTimeout(() => {
        this.resting = false;
        this.output.resume();
      }, pause).unref();
      this.emit('paced', pause);
    }
    if (this.lines.partial > this.maxLineBytes) {
      this.stopped = true;
      const bytes = this.lines.partial;
      this.lines.reset();
      this.overflowed = `the server sent a message larger than maxMessageSize (${sizeInWords(this.maxLineBytes)}); berth stopped it`;
      this.output.destroy();
      this.emit('overflow', bytes);
    }
  }

  private onLine({ parts, text, bytes, head }: Line): void {
    if (this.stopped) return;
    if (text === undefined) {
      this.emit('invalid', head, 'not JSON', bytes);
      return;
    }
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch {
      this.emit('invalid', head, 'not JSON', bytes);
      return;
    }
    const why = invalidMessageReason(value);
    if (why) {
      this.emit('invalid', head, why, bytes);
      return;
    }
    keepBytes(value as object, parts, text);
    this.emit('message', value as JsonRpcMessage);
  }

  /**
   * Why the server takes no more client messages now, if it does not: a pipe holds 64 KiB, and what the server has
   * not read past that waits in berth's memory, not the session's. A server that stops reading (hostile, or stuck in
   * a long synchronous tool) would otherwise let its client grow berth without bound, 202 after 202.
   */
  get backlogged(): string | undefined {
    const unread = this.input.writableLength;
    if (unread <= this.maxBacklog) return undefined;
    return `the server has not read ${(unread / 1048576).toFixed(1)} MiB of earlier messages from its stdin, more than limits.inputBacklog (${sizeInWords(this.maxBacklog)}); try again once it has`;
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
