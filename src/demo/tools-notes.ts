// Plain CRUD-ish tools over the note store: write, read, list, search.
import { z } from 'zod';
import type { DemoContext } from './context.js';
import { guard, ok } from './result.js';
import { MAX_NOTE_BYTES } from './store.js';

// Shape checks live in the store (checkName) so tools, resources and prompts share one rule;
// here we only bound the length so the schema documents it.
export const noteName = z
  .string()
  .min(1)
  .max(64)
  .describe('Note name: 1-64 chars of A-Z a-z 0-9 . _ - starting with a letter or digit, e.g. "meeting-notes".');

const noteInfo = z.object({ name: z.string(), bytes: z.number(), modified: z.string() });

export function registerNoteTools(ctx: DemoContext): void {
  const { server, store } = ctx;

  server.registerTool(
    'note_write',
    {
      title: 'Write note',
      description:
        `Create a note or overwrite an existing one with the given Markdown/plain-text content ` +
        `(max ${MAX_NOTE_BYTES} bytes). Notes persist for this session only.`,
      inputSchema: { name: noteName, content: z.string().describe('Full note body; replaces any existing content.') },
      outputSchema: { name: z.string(), bytes: z.number(), created: z.boolean() },
      annotations: { idempotentHint: true, destructiveHint: true, openWorldHint: false },
    },
    ({ name, content }) =>
      guard(async () => {
        const { bytes, created } = await store.write(name, content);
        ctx.log('info', { event: created ? 'note_created' : 'note_updated', name, bytes });
        if (created) ctx.notesChanged();
        return ok(`${created ? 'Created' : 'Updated'} note "${name}" (${bytes} bytes).`, { name, bytes, created });
      }),
  );

  server.registerTool(
    'note_read',
    {
      title: 'Read note',
      description: 'Return the full content of one note.',
      inputSchema: { name: noteName },
      outputSchema: { name: z.string(), content: z.string(), bytes: z.number(), modified: z.string() },
      annotations: { readOnlyHint: true, openWorldHint: false },
    },
    ({ name }) =>
      guard(async () => {
        const info = await store.stat(name);
        const content = await store.read(name);
        return ok(content, { ...info, content });
      }),
  );

  server.registerTool(
    'note_list',
    {
      title: 'List notes',
      description: 'List all notes in this session workspace with their size in bytes and last-modified time.',
      inputSchema: {},
      outputSchema: { notes: z.array(noteInfo), count: z.number() },
      annotations: { readOnlyHint: true, openWorldHint: false },
    },
    () =>
      guard(async () => {
        const notes = await store.list();
        const text = notes.length
          ? notes.map((n) => `${n.name}\t${n.bytes} B\t${n.modified}`).join('\n')
          : 'No notes yet. Create one with note_write.';
        return ok(text, { notes, count: notes.length });
      }),
  );

  server.registerTool(
    'note_search',
    {
      title: 'Search notes',
      description:
        'Case-insensitive substring search across note names and contents. Returns matching lines ' +
        '(line 0 means the name matched), at most 50.',
      inputSchema: { query: z.string().min(1).max(200).describe('Text to look for.') },
      outputSchema: {
        query: z.string(),
        hits: z.array(z.object({ name: z.string(), line: z.number(), text: z.string() })),
        truncated: z.boolean(),
      },
      annotations: { readOnlyHint: true, openWorldHint: false },
    },
    ({ query }) =>
      guard(async () => {
        const { hits, truncated } = await store.search(query);
        const text = hits.length
          ? hits.map((h) => `${h.name}:${h.line}: ${h.text}`).join('\n') + (truncated ? '\n(more results omitted)' : '')
          : `No matches for ${JSON.stringify(query)}.`;
        return ok(text, { query, hits, truncated });
      }),
  );
}
