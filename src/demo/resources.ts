// Notes as MCP resources (note://{name}, listable and completable) plus a review prompt.
import { ResourceTemplate } from '@modelcontextprotocol/sdk/server/mcp.js';
import { z } from 'zod';
import type { DemoContext } from './context.js';
import { checkName } from './store.js';

const MIME = 'text/markdown';
const noteUri = (name: string) => `note://${name}`; // valid names need no escaping

export function registerNoteResources(ctx: DemoContext): void {
  const { server, store } = ctx;

  server.registerResource(
    'note',
    new ResourceTemplate('note://{name}', {
      list: async () => ({
        resources: (await store.list()).map((n) => ({
          uri: noteUri(n.name),
          name: n.name,
          mimeType: MIME,
          size: n.bytes,
        })),
      }),
      complete: {
        name: async (prefix) => (await store.list()).map((n) => n.name).filter((n) => n.startsWith(prefix)),
      },
    }),
    { title: 'Note', description: 'A note in this session workspace.', mimeType: MIME },
    async (uri, { name }) => {
      const raw = Array.isArray(name) ? name[0] : name;
      // Decode first so "%2e%2e" style tricks are caught by the name check.
      const safe = checkName(decodeURIComponent(raw ?? ''));
      return { contents: [{ uri: uri.href, mimeType: MIME, text: await store.read(safe) }] };
    },
  );

  server.registerPrompt(
    'review_note',
    {
      title: 'Review a note',
      description: 'Ask the model to review one note for clarity, gaps and next steps.',
      argsSchema: { name: z.string().describe('Name of the note to review.') },
    },
    async ({ name }) => {
      const text = await store.read(checkName(name));
      return {
        description: `Review of note "${name}"`,
        messages: [
          { role: 'user', content: { type: 'resource', resource: { uri: noteUri(name), mimeType: MIME, text } } },
          {
            role: 'user',
            content: {
              type: 'text',
              text:
                'Review the note above. Point out unclear or contradictory passages, missing information ' +
                "and open questions, then suggest concrete edits and next steps. Keep the author's voice.",
            },
          },
        ],
      };
    },
  );
}
