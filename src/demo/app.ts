// Builds the demo notes server (no transport), so it can be embedded or tested in-process.
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { createContext } from './context.js';
import { registerNoteResources } from './resources.js';
import { NoteStore } from './store.js';
import { registerClientTools } from './tools-client.js';
import { registerNoteTools } from './tools-notes.js';
import { registerWorkspaceTools } from './tools-workspace.js';

export const DEMO_NAME = 'berth-demo-notes';
export const DEMO_VERSION = '0.1.0';

const INSTRUCTIONS = `A private notes workspace for this session. Notes are plain text/Markdown files
named like "todo" or "meeting-2024.05". Use note_write / note_read / note_list / note_search to manage
them; note_delete asks the user to confirm; note_summarize uses your own model via sampling;
workspace_reindex is a long task with progress; session_info shows which isolated session you are in.
Notes are also readable as resources at note://{name}.`;

export function createDemoServer(dir: string = process.cwd()): McpServer {
  const server = new McpServer({ name: DEMO_NAME, version: DEMO_VERSION }, { capabilities: { logging: {} }, instructions: INSTRUCTIONS });
  const ctx = createContext(server, new NoteStore(dir));
  registerNoteTools(ctx);
  registerClientTools(ctx);
  registerWorkspaceTools(ctx);
  registerNoteResources(ctx);
  return server;
}
