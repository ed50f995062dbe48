// What the stdio relay needs of whoever receives one client call's messages. A 2025 client's POST (Exchange), a
// 2026 client's request (Client2026Exchange), a bridged call, a listen leg and a round of bridge B each implement
// it in their own way; the relay knows only this.
import type { JsonRpcMessage, JsonRpcResponse } from '../wire/jsonrpc.js';

export interface CallSink {
  /** A message sent now reaches the client: on an open connection, or when it resumes the stream. */
  readonly reachable: boolean;
  /** A connection is open for this call right now (a server's question prefers a live sink). */
  readonly live: boolean;
  /** Names the sink; a stateless relay keys its clients' request ids by it (unrelated clients share a server). */
  readonly streamId: string;
  /** A request of this sink's is in flight under `key`; its answer will come through respond(). */
  expect(key: string): void;
  /** A message related to the sink's requests, sent before the final answer; false when it cannot be delivered. */
  deliver(message: JsonRpcMessage, onLost?: () => void): boolean;
  /** The final answer to the request under `key`; false when the client can no longer be reached. */
  respond(key: string, message: JsonRpcResponse): boolean;
  /** The client cancelled the request under `key`: no answer will come, and none is sent (2025-11-25 cancellation). */
  cancelled?(key: string): void;
}

let next = 0;
/** A name for a sink that keeps no stream of its own. */
export function sinkId(prefix: string): string {
  return `${prefix}${++next}`;
}
