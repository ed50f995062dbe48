// Workspace-level tools: a long-running, cancellable reindex with progress, and
// session_info, which makes berth's one-process-per-session isolation visible.
import { setTimeout as sleep } from 'node:timers/promises';
import { z } from 'zod';
import type { DemoContext, ReindexReport } from './context.js';
import { fail, guard, ok } from './result.js';

const reindexShape = {
  status: z.enum(['completed', 'cancelled']),
  stepsDone: z.number(),
  steps: z.number(),
  notes: z.number(),
  words: z.number(),
  topTerms: z.array(z.object({ term: z.string(), count: z.number() })),
  finishedAt: z.string(),
};

// Words of 4+ letters/digits: a crude but dependency-free way to skip most stop words.
const WORD_RE = /[\p{L}\p{N}]{4,}/gu;

export function registerWorkspaceTools(ctx: DemoContext): void {
  const { server, store } = ctx;

  server.registerTool(
    'workspace_reindex',
    {
      title: 'Reindex workspace',
      description:
        'Rebuild the term index of all notes in `steps` stages, pausing `delayMs` between stages. ' +
        'Reports progress per stage (pass a progressToken) and stops promptly when cancelled. ' +
        'Returns note/word counts and the most frequent terms.',
      inputSchema: {
        steps: z.number().int().min(1).max(100).default(10).describe('Number of stages (1-100, default 10).'),
        delayMs: z.number().int().min(0).max(5000).default(100).describe('Pause per stage in ms (default 100).'),
      },
      outputSchema: reindexShape,
      annotations: { readOnlyHint: true, openWorldHint: false },
    },
    ({ steps, delayMs }, extra) =>
      guard(async () => {
        const token = extra._meta?.progressToken;
        const names = (await store.list()).map((n) => n.name);
        const counts = new Map<string, number>();
        let words = 0;
        let stepsDone = 0;
        const report = (status: ReindexReport['status']): ReindexReport => ({
          status,
          stepsDone,
          steps,
          notes: names.length,
          words,
          topTerms: [...counts]
            .sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))
            .slice(0, 10)
            .map(([term, count]) => ({ term, count })),
          finishedAt: new Date().toISOString(),
        });
        try {
          for (let i = 0; i < steps; i++) {
            extra.signal.throwIfAborted();
            // Spread the notes evenly over the stages.
            const slice = names.slice(Math.floor((i * names.length) / steps), Math.floor(((i + 1) * names.length) / steps));
            for (const name of slice) {
              const text = await store.read(name).catch(() => ''); // deleted meanwhile: skip
              for (const w of text.toLowerCase().match(WORD_RE) ?? []) {
                counts.set(w, (counts.get(w) ?? 0) + 1);
                words++;
              }
            }
            await sleep(delayMs, undefined, { signal: extra.signal });
            stepsDone = i + 1;
            if (token !== undefined) {
              await extra.sendNotification({
                method: 'notifications/progress',
                params: {
                  progressToken: token,
                  progress: stepsDone,
                  total: steps,
                  message: `Stage ${stepsDone}/${steps}: indexed ${slice.length} note(s), ${words} words so far`,
                },
              });
            }
          }
          // SDK clients drop a progress notification that arrives in the same read as the
          // response (typescript-sdk#2580), so leave a short gap after the last one.
          if (token !== undefined) await sleep(20, undefined, { signal: extra.signal });
        } catch (err) {
          if (!extra.signal.aborted) throw err;
          // The client will never see this result (the SDK drops responses to cancelled
          // requests), but session_info reports it.
          ctx.lastReindex = report('cancelled');
          ctx.log('info', { event: 'reindex_cancelled', stepsDone, steps });
          return fail(`Reindex cancelled after ${stepsDone}/${steps} stages.`);
        }
        const done = report('completed');
        ctx.lastReindex = done;
        const terms = done.topTerms.map((t) => `${t.term}(${t.count})`).join(', ') || 'none';
        return ok(`Indexed ${done.notes} note(s), ${done.words} words in ${steps} stages. Top terms: ${terms}.`, {
          ...done,
        });
      }),
  );

  server.registerTool(
    'session_info',
    {
      title: 'Session info',
      description:
        'Show which berth session and process serve this connection (BERTH_SESSION_ID, pid, working ' +
        'directory), how many notes this session holds, and the last reindex result.',
      inputSchema: {},
      outputSchema: {
        sessionId: z.string().nullable(),
        pid: z.number(),
        cwd: z.string(),
        noteCount: z.number(),
        startedAt: z.string(),
        uptimeSeconds: z.number(),
        lastReindex: z.object(reindexShape).nullable(),
      },
      annotations: { readOnlyHint: true, openWorldHint: false },
    },
    () =>
      guard(async () => {
        const info = {
          sessionId: process.env.BERTH_SESSION_ID ?? null,
          pid: process.pid,
          cwd: process.cwd(),
          noteCount: (await store.list()).length,
          startedAt: ctx.startedAt.toISOString(),
          uptimeSeconds: Math.round((Date.now() - ctx.startedAt.getTime()) / 1000),
          lastReindex: ctx.lastReindex,
        };
        const text =
          `Session ${info.sessionId ?? '(not set: not running under berth)'}, pid ${info.pid}, cwd ${info.cwd}, ` +
          `${info.noteCount} note(s), up ${info.uptimeSeconds}s` +
          (info.lastReindex ? `, last reindex ${info.lastReindex.status} (${info.lastReindex.stepsDone}/${info.lastReindex.steps})` : '');
        return ok(text, info);
      }),
  );
}
