// Tools that call back into the client: elicitation (confirm delete), sampling
// (summarise) and roots. They exercise server-to-client requests through berth.
import { z } from 'zod';
import type { DemoContext } from './context.js';
import { fail, guard, ok } from './result.js';
import { noteName } from './tools-notes.js';

const MAX_SAMPLED_CHARS = 100_000;

export function registerClientTools(ctx: DemoContext): void {
  const { server, store } = ctx;
  const caps = () => server.server.getClientCapabilities() ?? {};

  server.registerTool(
    'note_delete',
    {
      title: 'Delete note',
      description:
        'Delete a note. The user is asked to confirm via an elicitation form; nothing is deleted unless ' +
        'they accept and tick "confirm". Pass force: true only if the user has already explicitly asked ' +
        'for this deletion (required when the client cannot show elicitation forms).',
      inputSchema: {
        name: noteName,
        force: z.boolean().optional().describe('Skip the confirmation prompt. Default false.'),
      },
      outputSchema: {
        name: z.string(),
        deleted: z.boolean(),
        outcome: z.enum(['confirmed', 'forced', 'declined', 'cancelled', 'not_confirmed']),
        reason: z.string().optional(),
      },
      annotations: { destructiveHint: true, openWorldHint: false },
    },
    ({ name, force }, extra) =>
      guard(async () => {
        const info = await store.stat(name);
        let reason: string | undefined;
        if (!force) {
          // Refuse rather than delete unconfirmed: a client without elicitation can't ask the user.
          if (!caps().elicitation) {
            return fail(
              `Not deleted: this client cannot show a confirmation form (no elicitation capability). ` +
                `If the user explicitly asked to delete "${name}", call note_delete again with force: true.`,
            );
          }
          const answer = await server.server.elicitInput(
            {
              mode: 'form',
              message: `Delete note "${name}" (${info.bytes} bytes, modified ${info.modified})? This cannot be undone.`,
              requestedSchema: {
                type: 'object',
                properties: {
                  confirm: { type: 'boolean', title: 'Yes, delete this note', default: false },
                  reason: { type: 'string', title: 'Reason (optional)', maxLength: 200 },
                },
                required: ['confirm'],
              },
            },
            { signal: extra.signal, relatedRequestId: extra.requestId },
          );
          if (answer.action !== 'accept') {
            const outcome = answer.action === 'decline' ? 'declined' : 'cancelled';
            return ok(`Kept "${name}": the user ${outcome} the deletion.`, { name, deleted: false, outcome });
          }
          if (answer.content?.confirm !== true) {
            return ok(`Kept "${name}": the user did not tick "confirm".`, {
              name,
              deleted: false,
              outcome: 'not_confirmed',
            });
          }
          if (typeof answer.content.reason === 'string' && answer.content.reason) reason = answer.content.reason;
        }
        await store.delete(name);
        ctx.log('notice', { event: 'note_deleted', name, forced: !!force, reason });
        ctx.notesChanged();
        const outcome = force ? 'forced' : 'confirmed';
        return ok(`Deleted "${name}"${reason ? ` (reason: ${reason})` : ''}.`, { name, deleted: true, outcome, reason });
      }),
  );

  server.registerTool(
    'note_summarize',
    {
      title: 'Summarise note',
      description:
        "Summarise a note using the client's own language model (MCP sampling). " +
        'Fails with a clear error if the client does not support sampling.',
      inputSchema: {
        name: noteName,
        maxWords: z.number().int().min(10).max(500).optional().describe('Upper bound on summary length. Default 80.'),
      },
      outputSchema: { name: z.string(), summary: z.string(), model: z.string(), truncatedInput: z.boolean() },
      annotations: { readOnlyHint: true, openWorldHint: true },
    },
    ({ name, maxWords = 80 }, extra) =>
      guard(async () => {
        const content = await store.read(name);
        if (!caps().sampling) {
          return fail(`Cannot summarise "${name}": this client does not support sampling (sampling/createMessage).`);
        }
        const truncatedInput = content.length > MAX_SAMPLED_CHARS;
        const body = truncatedInput ? content.slice(0, MAX_SAMPLED_CHARS) : content;
        const res = await server.server.createMessage(
          {
            systemPrompt: 'You summarise notes faithfully and concisely. Reply with the summary only.',
            messages: [
              {
                role: 'user',
                content: {
                  type: 'text',
                  text: `Summarise the note "${name}" in at most ${maxWords} words.\n\n---\n${body}`,
                },
              },
            ],
            maxTokens: Math.min(4096, maxWords * 4 + 64),
          },
          { signal: extra.signal, relatedRequestId: extra.requestId },
        );
        const blocks = Array.isArray(res.content) ? res.content : [res.content];
        const summary = blocks
          .map((b) => (b.type === 'text' ? b.text : ''))
          .join('')
          .trim();
        if (!summary) return fail(`The client's model returned no text summary for "${name}".`);
        return ok(summary, { name, summary, model: res.model, truncatedInput });
      }),
  );

  server.registerTool(
    'workspace_roots',
    {
      title: 'List client roots',
      description: 'Ask the client which roots (directories/URIs) it exposes, via roots/list, and report them.',
      inputSchema: {},
      outputSchema: { roots: z.array(z.object({ uri: z.string(), name: z.string().optional() })), count: z.number() },
      annotations: { readOnlyHint: true, openWorldHint: true },
    },
    async (_args, extra) => {
      if (!caps().roots) return fail('This client does not expose roots (no roots capability).');
      const { roots } = await server.server.listRoots(undefined, {
        signal: extra.signal,
        relatedRequestId: extra.requestId,
      });
      const list = roots.map((r) => (r.name === undefined ? { uri: r.uri } : { uri: r.uri, name: r.name }));
      const text = list.length ? list.map((r) => (r.name ? `${r.name}: ${r.uri}` : r.uri)).join('\n') : 'The client reports no roots.';
      return ok(text, { roots: list, count: list.length });
    },
  );
}
