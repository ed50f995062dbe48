// Resumable SSE streams (Streamable HTTP, "Resumability and Redelivery"). A stream is logical: it outlives the
// HTTP connections that carry it. Every event gets an id `<stream>.<seq>`; the stream part is random, so ids are
// unguessable and resolve only inside the session's own log. A session keeps its recent events (bounded by count
// and bytes); a client whose connection dropped comes back with GET + Last-Event-ID and gets every event after it,
// then the stream continues live.
import { randomBytes } from 'node:crypto';
import type { ServerResponse } from 'node:http';
import type { StreamsConfig } from '../config/schema.js';
import { HttpError } from '../wire/http-error.js';
import { ErrorCode } from '../wire/jsonrpc.js';
import { KEEP_ALIVE, messageEvent, primingEvent, retryField, sseHeaders } from '../wire/sse.js';

export type StreamOptions = Pick<StreamsConfig, 'keepAlive' | 'retry' | 'retainEvents' | 'retainBytes' | 'maxBuffer'>;

interface Retained {
  stream: SseStream;
  seq: number;
  frame: string;
  bytes: number;
  /** Written to a connection at least once (not necessarily read by the client). */
  written: boolean;
  /** Called when the event is dropped from retention before any connection carried it. */
  onLost?: () => void;
}

/** The events of one session, for replay; a log with `retain: false` keeps nothing (stateless runtimes). */
export class StreamLog {
  private readonly streams = new Map<string, SseStream>();
  private readonly fifo: Retained[] = [];
  private bytes = 0;

  constructor(
    readonly opts: StreamOptions,
    readonly retain = true,
  ) {}

  open(): SseStream {
    const s = new SseStream(randomBytes(12).toString('base64url'), this);
    if (this.retain) this.streams.set(s.id, s);
    return s;
  }

  get retainedEvents(): number {
    return this.fifo.length;
  }

  /** The stream a Last-Event-ID belongs to, and the position after which to replay. */
  resolve(lastEventId: string): { stream: SseStream; seq: number } {
    const m = /^([A-Za-z0-9_-]{16})\.(\d{1,15})$/.exec(lastEventId);
    if (!m) throw new HttpError(400, ErrorCode.ServerError, `Bad Request: Last-Event-ID ${JSON.stringify(lastEventId.slice(0, 100))} is not an event id berth issued`);
    const stream = this.streams.get(m[1]!);
    if (!stream) {
      throw new HttpError(
        400,
        ErrorCode.ServerError,
        'Bad Request: Last-Event-ID names no stream of this session (it belongs to another session, or its stream has ended and been dropped from retention)',
      );
    }
    const seq = Number(m[2]);
    stream.checkResumable(seq);
    return { stream, seq };
  }

  /** @internal Keeps an event for replay, then drops the oldest events beyond the limits. */
  keep(e: Retained): void {
    this.fifo.push(e);
    this.bytes += e.bytes;
    while (this.fifo.length > this.opts.retainEvents || (this.bytes > this.opts.retainBytes && this.fifo.length > 1)) {
      const old = this.fifo.shift()!;
      this.bytes -= old.bytes;
      old.stream.dropped(old);
      if (!old.written) old.onLost?.();
    }
  }

  /** @internal */
  forget(s: SseStream): void {
    this.streams.delete(s.id);
  }

  /** Ends every connection and forgets everything (the session is over). */
  close(): void {
    for (const s of this.streams.values()) s.finish();
    this.streams.clear();
    this.fifo.length = 0;
    this.bytes = 0;
  }
}

export class SseStream {
  private seq = 0;
  /** This stream's retained events, oldest first. */
  private readonly events: Retained[] = [];
  /** Highest seq dropped from retention: resuming from before it would leave a gap. */
  private droppedThrough = 0;
  /** Highest seq written to any connection; a fresh (non-resuming) attach starts after it. */
  private writtenThrough = 0;
  private conn: { res: ServerResponse; lastWrite: number; timer?: NodeJS.Timeout } | undefined;
  private done = false;

  constructor(
    readonly id: string,
    private readonly log: StreamLog,
  ) {}

  /** A connection is carrying this stream right now. */
  get attached(): boolean {
    const res = this.conn?.res;
    return !!res && !res.destroyed && !res.writableEnded;
  }

  /** Events sent now can still reach the client: live, or kept until it resumes. */
  get reachable(): boolean {
    return !this.done && (this.log.retain || this.attached);
  }

  get finished(): boolean {
    return this.done;
  }

  /**
   * Carries the stream on `res`: replays retained events after `after` ('unwritten': only those no connection
   * carried yet), then goes live. A newer connection replaces an older one.
   */
  attach(res: ServerResponse, headers: Record<string, string>, after: number | 'unwritten', priming: boolean): void {
    const from = after === 'unwritten' ? this.writtenThrough : after;
    this.checkResumable(from);
    this.detach();
    res.writeHead(200, sseHeaders(headers));
    const conn = { res, lastWrite: Date.now(), timer: undefined as NodeJS.Timeout | undefined };
    this.conn = conn;
    res.on('close', () => this.onClose(conn));
    const { retry, keepAlive } = this.log.opts;
    // A priming id names the position just before what follows, so resuming from it loses nothing.
    this.write(priming ? primingEvent(`${this.id}.${from}`, retry) : after === 'unwritten' ? '' : retryField(retry));
    for (const e of this.events) if (e.seq > from) this.carry(e);
    res.flushHeaders();
    if (this.done) {
      res.end();
      return;
    }
    if (keepAlive > 0) {
      conn.timer = setInterval(() => {
        if (this.conn === conn && Date.now() - conn.lastWrite >= keepAlive - 10) this.write(KEEP_ALIVE);
      }, keepAlive);
      conn.timer.unref();
    }
  }

  /** Sends one message: written now if a connection is open, kept for replay either way. */
  send(message: unknown, onLost?: () => void): void {
    if (this.done) return;
    const seq = ++this.seq;
    const frame = messageEvent(`${this.id}.${seq}`, message);
    const e: Retained = { stream: this, seq, frame, bytes: Buffer.byteLength(frame), written: false, onLost };
    if (this.log.retain) this.events.push(e);
    this.carry(e);
    if (this.log.retain) this.log.keep(e);
    else if (!e.written) onLost?.();
  }

  /** The stream is complete (its final response was sent): the connection ends once it has everything. */
  finish(): void {
    if (this.done) return;
    this.done = true;
    if (this.attached) this.conn!.res.end();
    if (this.events.length === 0) this.log.forget(this);
  }

  /** Closes the current connection (the stream itself goes on). */
  detach(): void {
    const c = this.conn;
    if (!c) return;
    this.conn = undefined;
    clearInterval(c.timer);
    if (!c.res.writableEnded) c.res.end();
  }

  /** @internal Throws the answer for a resume from `seq` that cannot be served without a gap. */
  checkResumable(seq: number): void {
    if (seq > this.seq) throw new HttpError(400, ErrorCode.ServerError, `Bad Request: Last-Event-ID ${this.id}.${seq} names an event that was never sent`);
    if (seq < this.droppedThrough) {
      throw new HttpError(
        410,
        ErrorCode.ServerError,
        `Gone: events after ${this.id}.${seq} are no longer retained (the session keeps its last ${this.log.opts.retainEvents} events / ${this.log.opts.retainBytes} bytes: streams.retainEvents, streams.retainBytes)`,
      );
    }
  }

  /** @internal Retention let go of an event (always this stream's oldest retained one). */
  dropped(e: Retained): void {
    const i = this.events.indexOf(e);
    if (i >= 0) this.events.splice(i, 1);
    this.droppedThrough = Math.max(this.droppedThrough, e.seq);
    if (this.done && this.events.length === 0) this.log.forget(this);
  }

  private carry(e: Retained): void {
    if (!this.attached) return; // the connection was dropped mid-replay (maxBuffer): the rest waits for a resume
    e.written = true;
    this.writtenThrough = Math.max(this.writtenThrough, e.seq);
    this.write(e.frame);
  }

  private write(chunk: string): void {
    const c = this.conn;
    if (!c || chunk === '' || c.res.destroyed || c.res.writableEnded) return;
    c.res.write(chunk);
    c.lastWrite = Date.now();
    // A client that does not read must not make berth buffer without bound: drop the connection, keep the
    // events; the client resumes from the last one it got.
    if (c.res.writableLength > this.log.opts.maxBuffer) {
      this.conn = undefined;
      clearInterval(c.timer);
      c.res.destroy();
    }
  }

  private onClose(conn: NonNullable<SseStream['conn']>): void {
    clearInterval(conn.timer);
    if (this.conn === conn) this.conn = undefined;
  }
}
