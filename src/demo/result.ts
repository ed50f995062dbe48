// Tool results carry both a human-readable text block and machine-readable structuredContent.
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { NoteError } from './store.js';

export function ok(text: string, structured: Record<string, unknown>): CallToolResult {
  return { content: [{ type: 'text', text }], structuredContent: structured };
}

export function fail(text: string): CallToolResult {
  return { content: [{ type: 'text', text }], isError: true };
}

/** Run a tool body, turning expected NoteErrors into error results (unexpected errors still propagate). */
export async function guard(body: () => Promise<CallToolResult>): Promise<CallToolResult> {
  try {
    return await body();
  } catch (err) {
    if (err instanceof NoteError) return fail(err.message);
    throw err;
  }
}
