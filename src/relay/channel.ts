// What the relay needs of a server it speaks to message by message: send one JSON-RPC message, hear each one the
// server sends. A stdio pipe (stdio-channel.ts) and a Streamable HTTP session held by berth as the server's client
// (http-channel.ts) both are one; the relay, and the bridges built on it, never ask which.
import type { JsonRpcMessage } from '../wire/jsonrpc.js';

export interface MessageChannel {
  /** Sends one message; false when the server can no longer be reached (nothing was sent). */
  send(message: JsonRpcMessage): boolean;
  on(event: 'message', listener: (message: JsonRpcMessage) => void): unknown;
}
