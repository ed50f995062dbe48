// Shared per-process state handed to each group of tools. One process serves one
// berth session, so "per process" is "per session".
import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import type { LoggingLevel } from '@modelcontextprotocol/sdk/types.js';
import type { NoteStore } from './store.js';

export interface ReindexReport {
  status: 'completed' | 'cancelled';
  stepsDone: number;
  steps: number;
  notes: number;
  words: number;
  topTerms: { term: string; count: number }[];
  finishedAt: string;
}

export interface DemoContext {
  server: McpServer;
  store: NoteStore;
  startedAt: Date;
  lastReindex: ReindexReport | null;
  /** Send notifications/message to the client; never throws (logging is best-effort). */
  log(level: LoggingLevel, data: Record<string, unknown>): void;
  /** Tell the client the note:// resource list changed. */
  notesChanged(): void;
}

export function createContext(server: McpServer, store: NoteStore): DemoContext {
  return {
    server,
    store,
    startedAt: new Date(),
    lastReindex: null,
    log(level, data) {
      server.sendLoggingMessage({ level, logger: 'notes', data }).catch(() => {});
    },
    notesChanged() {
      if (server.isConnected()) server.sendResourceListChanged();
    },
  };
}
