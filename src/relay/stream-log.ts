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
import { jsonBytes, writeJson, type Json } from '../wire/raw-json.js';

export type StreamOptions = Pick<StreamsConfig, 'keepAlive' | 'retry' | 'retainEvents' | 'retainBytes' | 'maxBuffer'>;

interface Retained {
  stream: SseStream;
  seq: number;
  frame: Json;
  bytes: number;
  /** Written to a connection at least once (not necessarily read by the client). */
  written: boolean;
  /** Called when the event is dropped from retention before any connection carried it. */
  onLost?: () => void;
}

/**
 * The bytes every session of a berth may keep for replay, together (server.retainBudget). Each session is bounded by
 * streams.retainBytes, but a thousand sessions at their bound are gigabytes. Past the budget berth lets go of events
 * in two passes: first events some connection already carried (only a resume from before them is lost: 410), then
 * events no client has seen (their calls fail, as under streams.retainBytes); in each pass the session keeping the
 * most goes first, so a session hoarding answers loses its own before a small session loses any. Events on their
 * way to an open connection are never let go here; what those hold is bounded per connection by maxBuffer.
 */
export class RetentionBudget {
  /** Logs keeping anything (a log joins with its first event and leaves when it keeps none). */
  private readonly logs = new Set<StreamLog>();
  private total = 0;

  /** `limit` bytes in all; 0: no limit. */
  constructor(readonly limit: number) {}

  get bytes(): number {
    return this.total;
  }

  /** @internal A log's retained bytes changed by `delta` (it now keeps `now`); sheds while over the limit. */
  change(log: StreamLog, delta: number, now: number): void {
    this.total += delta;
    if (now > 0) this.logs.add(log);
    else this.logs.delete(log);
    if (this.limit === 0 || delta <= 0 || this.total <= this.limit) return;
    // Each pass ranks the sessions by what it may take from them: bytes already delivered, then bytes not yet seen.
    const passes = [(l: StreamLog) => l.deliveredBytes, (l: StreamLog) => l.retainedBytes - l.deliveredBytes] as const;
    for (const [pass, sheddable] of passes.entries()) {
      // One scan finds the largest and the runner-up; the largest sheds until it is no longer the largest. A log
      // whose unseen events are all on their way to open connections sheds nothing and costs a round: past
      // SHED_ROUNDS per pass the rest waits for the next event (a little over for a while, never without end).
      const spent = new Set<StreamLog>();
      for (let round = 0; round < SHED_ROUNDS && this.total > this.limit; round++) {
        let largest: StreamLog | undefined;
        let most = 0;
        let second = 0;
        for (const l of this.logs) {
          const n = spent.has(l) ? 0 : sheddable(l);
          if (n > most) {
            second = most;
            most = n;
            largest = l;
          } else if (n > second) second = n;
        }
        if (!largest) break; // this pass has nothing left to let go
        let shed = false;
        while (this.total > this.limit && sheddable(largest) >= second && largest.shedOldest(pass === 0)) shed = true;
        if (!shed) spent.add(largest);
      }
      if (this.total <= this.limit) return;
    }
  }
}

/** The settings that bound what is kept, as messages about an event retention let go name them. */
export const RETENTION_SETTINGS = 'streams.retainEvents / retainBytes, server.retainBudget';

/** Scans of the sessions per pass, per event past the budget (a scan is one look at each session keeping anything). */
const SHED_ROUNDS = 16;

/** The events of one session, for replay; a log with `retain: false` keeps nothing (stateless runtimes). */
export class StreamLog {
  private readonly streams = new Map<string, SseStream>();
  private readonly fifo: Retained[] = [];
  private bytes = 0;
  private delivered = 0;

  /** The session is over: nothing more is kept (a server still writing while it stops adds nothing). */
  private closed = false;

  constructor(
    readonly opts: StreamOptions,
    readonly retain = true,
    /** Told when an event no connection carried is let go and nobody else hears of it (a lost response). */
    private readonly onDiscard?: (seq: number, streamId: string) => void,
    /** Shared with every other session's log: the bound on what they keep together. */
    private readonly budget?: RetentionBudget,
  ) {}

  /** Nothing is kept any more: the session is over (or the log keeps nothing at all, stateless). */
  get keeping(): boolean {
    return this.retain && !this.closed;
  }

  get retainedBytes(): number {
    return this.bytes;
  }

  /** Of those, the bytes of events some connection has carried (only a resume from before them needs them). */
  get deliveredBytes(): number {
    return this.delivered;
  }

  /**
   * @internal An event of a stream of this log was written to a connection for the first time. While the log keeps,
   * a stream's events are all in it (retention lets go of a stream's oldest first); once closed, it keeps none.
   */
  carried(e: Retained): void {
    if (this.keeping) this.delivered += e.bytes;
  }

  open(): SseStream {
    const s = new SseStream(randomBytes(12).toString('base64url'), this);
    if (this.keeping) this.streams.set(s.id, s);
    return s;
  }

  get retainedEvents(): number {
    return this.fifo.length;
  }

  /** The stream a Last-Event-ID belongs to, and the position after which to replay. */
  resolve(lastEventId: string): { stream: SseStream; seq: number } {
    const m = /^([A-Za-z0-9_-]{16})\.(\d{1,15})$/.exec(lastEventId);
    if (!m)
      throw new HttpError(
        400,
        ErrorCode.ServerError,
        `Bad Request: Last-Event-ID ${JSON.stringify(lastEventId.slice(0, 100))} is not an event id berth issued`,
      );
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

  /**
   * @internal Keeps an event for replay, then lets go of the oldest events beyond the limits. An event still on
   * its way to an open connection is not let go (a reading client must get every event, however fast they come):
   * what piles up there is bounded by maxBuffer instead, past which the connection is cut and the rest waits here.
   */
  keep(e: Retained): void {
    this.fifo.push(e);
    this.bytes += e.bytes;
    while (this.over() && this.shedOldest(false));
    this.budget?.change(this, e.bytes, this.bytes);
  }

  /**
   * @internal Lets go of the oldest event not on its way to an open connection (with `delivered`, only one some
   * connection carried already); false when there is none.
   */
  shedOldest(delivered: boolean): boolean {
    const i = this.fifo.findIndex((old) => old.written || (!delivered && !old.stream.attached));
    if (i < 0) return false;
    const [old] = this.fifo.splice(i, 1) as [Retained];
    this.bytes -= old.bytes;
    if (old.written) this.delivered -= old.bytes;
    this.budget?.change(this, -old.bytes, this.bytes);
    old.stream.dropped(old);
    if (!old.written) {
      if (old.onLost) old.onLost();
      else this.onDiscard?.(old.seq, old.stream.id);
    }
    return true;
  }

  private over(): boolean {
    return this.fifo.length > this.opts.retainEvents || (this.bytes > this.opts.retainBytes && this.fifo.length > 1);
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
    this.closed = true;
    this.budget?.change(this, -this.bytes, 0);
    this.bytes = 0;
    this.delivered = 0;
  }
}

interface Connection {
  res: ServerResponse;
  /** Seq of the last event written to this connection. */
  cursor: number;
  lastWrite: number;
  timer?: NodeJS.Timeout;
  /** Waiting for the socket to drain; events meanwhile stay in the log. */
  waiting: boolean;
  /** Bytes of new events that arrived while waiting: the slow-reader measure (maxBuffer). */
  stalled: number;
}

export class SseStream {
  private seq = 0;
  /** This stream's retained events: contiguous seqs, oldest first (retention drops a stream's oldest first). */
  private readonly events: Retained[] = [];
  /** Highest seq dropped from retention: resuming from before it would leave a gap. */
  private droppedThrough = 0;
  /** Highest seq written to any connection; a fresh (non-resuming) attach starts after it. */
  private writtenThrough = 0;
  private conn: Connection | undefined;
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
    return !this.done && (this.log.keeping || this.attached);
  }

  /**
   * Carries the stream on `res`: replays retained events after `after` ('unwritten': only those no connection
   * carried yet), paced by the socket, then goes live. A newer connection replaces an older one.
   */
  attach(res: ServerResponse, headers: Record<string, string>, after: number | 'unwritten', priming: boolean): void {
    // A fresh GET promises no continuity: it starts at what no connection carried yet and is still kept (what
    // retention let go unseen was reported as lost then). Only a resume (Last-Event-ID) must not skip a gap.
    const from = after === 'unwritten' ? Math.max(this.writtenThrough, this.droppedThrough) : after;
    if (after !== 'unwritten') this.checkResumable(from);
    this.detach();
    res.writeHead(200, sseHeaders(headers));
    const conn: Connection = { res, cursor: from, lastWrite: Date.now(), waiting: false, stalled: 0 };
    this.conn = conn;
    res.on('close', () => this.onClose(conn));
    res.on('drain', () => {
      conn.waiting = false;
      conn.stalled = 0;
      this.pump();
    });
    const { retry, keepAlive } = this.log.opts;
    // A priming id names the position just before what follows, so resuming from it loses nothing.
    if (priming) this.write(conn, primingEvent(`${this.id}.${from}`, retry));
    else if (after !== 'unwritten') this.write(conn, retryField(retry));
    res.flushHeaders();
    if (keepAlive > 0) {
      conn.timer = setInterval(() => {
        if (!conn.waiting && Date.now() - conn.lastWrite >= keepAlive - 10) this.write(conn, KEEP_ALIVE);
      }, keepAlive);
      conn.timer.unref();
    }
    this.pump();
  }

  /** Sends one message: written now if a connection can take it, kept for replay either way. */
  send(message: unknown, onLost?: () => void): void {
    if (this.done) return;
    const seq = ++this.seq;
    const frame = messageEvent(`${this.id}.${seq}`, message);
    const e: Retained = { stream: this, seq, frame, bytes: jsonBytes(frame), written: false, onLost };
    const c = this.conn;
    if (!this.log.keeping) {
      // Nothing to replay from (stateless, or the session is over): written at once or lost, and a reader that falls
      // maxBuffer behind is cut.
      if (c && c.res.writableLength > this.log.opts.maxBuffer) this.cut(c);
      if (this.conn && this.write(this.conn, frame)) this.conn.cursor = seq;
      else onLost?.();
      return;
    }
    this.events.push(e);
    this.log.keep(e);
    if (!c) return;
    if (c.waiting) {
      // A client that does not read must not make berth hold its events without bound: past maxBuffer, its
      // connection is closed; the events stay in the log and the client resumes from the last one it got.
      c.stalled += e.bytes;
      if (c.stalled > this.log.opts.maxBuffer) this.cut(c);
      return;
    }
    this.pump();
  }

  /** The stream is complete (its final response was sent): the connection ends once it has everything. */
  finish(): void {
    if (this.done) return;
    this.done = true;
    this.pump();
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
    if (seq > this.seq)
      throw new HttpError(400, ErrorCode.ServerError, `Bad Request: Last-Event-ID ${this.id}.${seq} names an event that was never sent`);
    if (seq < this.droppedThrough) {
      throw new HttpError(
        410,
        ErrorCode.ServerError,
        `Gone: events after ${this.id}.${seq} are no longer retained (the session keeps its last ${this.log.opts.retainEvents} events / ${this.log.opts.retainBytes} bytes: streams.retainEvents, streams.retainBytes; all sessions together at most server.retainBudget)`,
      );
    }
  }

  /** @internal Retention let go of this stream's oldest event. */
  dropped(e: Retained): void {
    if (this.events[0] === e) this.events.shift();
    this.droppedThrough = Math.max(this.droppedThrough, e.seq);
    // A connection that had not got that far can no longer continue without a gap.
    if (this.conn && this.conn.cursor < e.seq) this.cut(this.conn);
    if (this.done && this.events.length === 0) this.log.forget(this);
  }

  /** Writes retained events the connection has not had yet, until the socket asks to wait; ends a finished stream. */
  private pump(): void {
    const c = this.conn;
    if (!c || c.waiting || !this.attached) return;
    const first = this.events[0]?.seq ?? this.seq + 1;
    for (let i = Math.max(0, c.cursor + 1 - first); i < this.events.length; i++) {
      const e = this.events[i]!;
      if (!this.write(c, e.frame)) return;
      c.cursor = e.seq;
      if (!e.written) {
        e.written = true;
        this.log.carried(e);
      }
      this.writtenThrough = Math.max(this.writtenThrough, e.seq);
      if (c.res.writableLength > c.res.writableHighWaterMark) {
        c.waiting = true; // 'drain' resumes the pump
        return;
      }
    }
    if (this.done && c.cursor >= this.seq) this.detach();
  }

  private write(c: Connection, chunk: Json): boolean {
    if (this.conn !== c || c.res.destroyed || c.res.writableEnded) return false;
    writeJson(c.res, chunk);
    c.lastWrite = Date.now();
    return true;
  }

  private cut(c: Connection): void {
    if (this.conn === c) this.conn = undefined;
    clearInterval(c.timer);
    c.res.destroy();
  }

  private onClose(conn: Connection): void {
    clearInterval(conn.timer);
    if (this.conn === conn) this.conn = undefined;
  }
}
