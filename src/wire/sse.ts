// Server-Sent Events framing for Streamable HTTP: headers, message events, the priming event and keep-alives.
// What is sent when, and what is kept for replay, lives in src/relay/stream-log.ts.
import { jsonOf, type Json } from './raw-json.js';

export function sseHeaders(extra: Record<string, string>): Record<string, string> {
  return {
    ...extra,
    'content-type': 'text/event-stream',
    'cache-control': 'no-cache, no-transform',
    connection: 'keep-alive',
    // Disable proxy buffering (nginx) so events reach the client as they are written.
    'x-accel-buffering': 'no',
  };
}

/**
 * One JSON-RPC message. JSON.stringify never emits a raw newline, and kept bytes have none (raw-json.ts), so one data
 * line always suffices. A message that passes through as its bytes makes an event in pieces, written as they are.
 */
export function messageEvent(id: string, message: unknown): Json {
  return event(`id: ${id}\nevent: message\ndata: `, message);
}

/** One JSON-RPC message as an event without an id (a 2026-07-28 response stream is not resumable). */
export function dataEvent(message: unknown): Json {
  return event('event: message\ndata: ', message);
}

function event(head: string, message: unknown): Json {
  const json = jsonOf(message);
  if (typeof json === 'string') return `${head}${json}\n\n`;
  return [Buffer.from(head), ...json, EVENT_END];
}

const EVENT_END = Buffer.from('\n\n');

/**
 * The 2025-11-25 priming event: an id and empty data, so the client can resume (GET + Last-Event-ID) even if the
 * connection drops before the first message; `retry` tells it how long to wait before reconnecting.
 */
export function primingEvent(id: string, retryMs: number): string {
  return `id: ${id}\nretry: ${retryMs}\ndata: \n\n`;
}

/** A retry hint alone (no event is dispatched to the client's application). */
export function retryField(retryMs: number): string {
  return `retry: ${retryMs}\n\n`;
}

export const KEEP_ALIVE = ': keep-alive\n\n';
