// The person at the terminal: forms, approvals, a progress bar and log lines, on given input/output streams.
// Drawn by inquirer and cli-progress on a terminal; as plain lines (no escape codes) on anything else.
import { checkbox, input, search, select } from '@inquirer/prompts';
import cliProgress from 'cli-progress';
import { PassThrough } from 'node:stream';
import type {
  CreateMessageRequest,
  CreateMessageResult,
  ElicitRequestFormParams,
  ElicitResult,
  LoggingMessageNotification,
  Progress,
} from '@modelcontextprotocol/sdk/types.js';
import { McpError } from '@modelcontextprotocol/sdk/types.js';
import { checkValue, fieldsOf, hint, parseField, validateContent, type Field } from './form.js';
import { LineReader, plainPrompts, type Prompts } from './plain-prompts.js';
import { textPrompt } from './text-prompt.js';
import { describeSampling, forwardSampling, typedReply, type ChatEndpoint } from './sampling.js';

/** Ctrl-C at a prompt (inquirer's ExitPromptError), or a prompt left unanswered when the input ended. */
export function isPromptExit(e: unknown): boolean {
  return e instanceof Error && (e.name === 'ExitPromptError' || e.name === 'AbortPromptError' || e.name === 'InputClosedError');
}

/** Whether prompts are plain lines: the output is not a terminal, or asks for no colour (NO_COLOR) or cursor (TERM=dumb). */
export function plainOutput(output: NodeJS.WritableStream, env: NodeJS.ProcessEnv = process.env): boolean {
  return !(output as NodeJS.WriteStream).isTTY || !!env.NO_COLOR || env.TERM === 'dumb';
}

/** What a prompt rejects with once the input has ended: nobody is left to answer. */
export class InputClosedError extends Error {
  constructor() {
    super('stdin closed: no one is left to answer');
    this.name = 'InputClosedError';
  }
}

export class Terminal {
  private queue: Promise<unknown> = Promise.resolve();
  private bars: cliProgress.MultiBar | undefined;
  private bar: cliProgress.SingleBar | undefined;
  /** Aborted when the input ends: a prompt then fails at once instead of waiting (and redrawing) forever. */
  private readonly inputGone = new AbortController();
  /** No escape codes: prompts are numbered lists answered by a line, progress is a line per step. */
  readonly plain: boolean;
  private readonly prompts: Prompts;

  /** `plain` defaults to plainOutput(output). */
  constructor(
    readonly input: NodeJS.ReadableStream = process.stdin,
    readonly output: NodeJS.WritableStream = process.stdout,
    o: { plain?: boolean } = {},
  ) {
    this.plain = o.plain ?? plainOutput(output);
    // The one place the kind of prompt is chosen. Plain answers are echoed unless a terminal shows them already.
    this.prompts = this.plain
      ? plainPrompts(
          new LineReader(input, this.inputGone.signal),
          (t) => output.write(t),
          !((input as NodeJS.ReadStream).isTTY && this.tty),
        )
      : this.inquirerPrompts();
    // Deferred past the current turn: answers piped in arrive with the end of input, and the prompt that reads the
    // last one settles a few promise turns after its line event; ended at once, that answer was thrown away.
    const gone = () => setImmediate(() => this.inputGone.abort(new InputClosedError()));
    input.once('end', gone);
    input.once('close', gone);
    if ((input as NodeJS.ReadStream).readableEnded) gone();
  }

  /** Whether the input has ended (a prompt can no longer be answered). */
  get inputClosed(): boolean {
    return this.inputGone.signal.aborted;
  }

  /** Each prompt ends the stream it writes to (harmless on a TTY), so any other gets one of its own in front. */
  private get ctx() {
    const signal = this.inputGone.signal;
    if (this.tty) return { input: this.input, output: this.output, signal };
    const output = new PassThrough();
    output.pipe(this.output, { end: false });
    return { input: this.input, output, signal };
  }

  private get tty(): boolean {
    return !!(this.output as NodeJS.WriteStream).isTTY;
  }

  private inquirerPrompts(): Prompts {
    return {
      select: (o) => select(o, this.ctx),
      search: <T>(o: { message: string; items: Array<{ name: string; value: T; description?: string }> }) =>
        search<T>(
          {
            message: o.message,
            source: (term) => {
              const t = (term ?? '').toLowerCase();
              return o.items
                .filter((i) => i.name.toLowerCase().includes(t))
                .sort((a, b) => Number(!a.name.toLowerCase().startsWith(t)) - Number(!b.name.toLowerCase().startsWith(t)));
            },
          },
          this.ctx,
        ),
      checkbox: (o) => checkbox({ ...o, validate: (items) => o.validate(items.map((i) => i.value)) }, this.ctx),
      text: (o) => textPrompt(o, this.ctx),
      reply: (message) => input({ message, required: true }, this.ctx),
    };
  }

  print(text: string): void {
    if (this.bars) this.bars.log(`${text}\n`);
    else this.output.write(`${text}\n`);
  }

  /** One prompt sequence at a time (server requests can arrive together); the bar steps aside meanwhile. */
  exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(() => {
      this.endProgress();
      return fn();
    });
    this.queue = run.catch(() => undefined);
    return run;
  }

  progress(p: Progress): void {
    const msg = p.message ?? '';
    if (this.plain || p.total === undefined) {
      this.print(`progress ${p.progress}${p.total !== undefined ? `/${p.total}` : ''}${msg ? ` ${msg}` : ''}`);
      return;
    }
    if (!this.bar) {
      this.bars = new cliProgress.MultiBar(
        {
          stream: this.output as NodeJS.WriteStream,
          format: '{bar} {percentage}% | {value}/{total} {message}',
          hideCursor: false,
          clearOnComplete: false,
          fps: 20,
        },
        cliProgress.Presets.shades_classic,
      );
      this.bar = this.bars.create(p.total, 0, { message: msg });
    }
    this.bar.setTotal(p.total);
    this.bar.update(p.progress, { message: msg });
  }

  /** Draws the bar's last state and leaves it on screen. */
  endProgress(): void {
    this.bars?.stop();
    this.bars = undefined;
    this.bar = undefined;
  }

  log(n: LoggingMessageNotification['params']): void {
    const data = typeof n.data === 'string' ? n.data : JSON.stringify(n.data);
    this.print(`[${n.level}]${n.logger ? ` ${n.logger}:` : ''} ${data}`);
  }

  /** Asks every field; resolves to the content, validated. */
  async form(fields: Field[]): Promise<Record<string, unknown>> {
    const content: Record<string, unknown> = {};
    for (const f of fields) {
      const v = await this.ask(f);
      if (v !== undefined) content[f.name] = v;
    }
    const checked = validateContent(fields, content);
    if (!checked.ok) throw new Error(checked.errors.join('; ')); // each answer was checked already
    return checked.content;
  }

  private async ask(f: Field): Promise<unknown> {
    const h = hint(f);
    const message = `${f.label}${f.description ? ` — ${f.description}` : ''}${h ? ` (${h})` : ''}`;
    const SKIP = Symbol('skip');
    if (f.kind === 'boolean' || f.kind === 'choice') {
      const choices: Array<{ name: string; value: unknown }> =
        f.kind === 'boolean'
          ? [
              { name: 'yes', value: true },
              { name: 'no', value: false },
            ]
          : f.choices.map((c) => ({ name: c.title === c.value ? c.value : `${c.title} (${c.value})`, value: c.value }));
      if (!f.required) choices.push({ name: '(leave empty)', value: SKIP }); // a default is pre-selected, not forced
      const v = await this.prompts.select({ message, choices, default: f.default });
      return v === SKIP ? undefined : v;
    }
    if (f.kind === 'multi') {
      const chosen = await this.prompts.checkbox({
        message,
        choices: f.choices.map((c) => ({ name: c.title, value: c.value, checked: f.default?.includes(c.value) })),
        validate: (values) => (values.length === 0 && !f.required) || checkValue(f, values) || true,
      });
      return chosen.length === 0 && !f.required ? undefined : chosen;
    }
    // The default is on the line to start with: keep it, edit it, or delete it to leave the field empty.
    const prefill = f.default === undefined ? undefined : typeof f.default === 'string' ? f.default : JSON.stringify(f.default);
    const raw = await this.prompts.text({
      message,
      prefill,
      validate: (s) => {
        const r = parseField(f, s);
        return r.ok || r.error;
      },
    });
    const r = parseField(f, raw);
    return r.ok ? r.value : undefined;
  }

  /** An elicitation form: accept (with the filled-in form), decline or cancel; Ctrl-C cancels. */
  elicit(params: ElicitRequestFormParams): Promise<ElicitResult> {
    return this.exclusive(async () => {
      this.output.write(`\nThe server asks: ${params.message}\n`);
      try {
        const action = await this.prompts.select({
          message: 'Answer?',
          choices: [
            { name: 'Accept (fill in the form)', value: 'accept' as const },
            { name: 'Decline', value: 'decline' as const },
            { name: 'Cancel', value: 'cancel' as const },
          ],
        });
        if (action !== 'accept') return { action };
        const content = await this.form(fieldsOf(params.requestedSchema));
        return { action: 'accept', content: content as ElicitResult['content'] };
      } catch (e) {
        if (isPromptExit(e)) {
          if (this.inputClosed) this.output.write('stdin closed: the elicitation is cancelled\n');
          return { action: 'cancel' };
        }
        throw e;
      }
    });
  }

  /** Sampling: typed by the person, or forwarded to a model once the person approves (unless autoApprove). */
  sample(params: CreateMessageRequest['params'], endpoint?: ChatEndpoint, autoApprove = false): Promise<CreateMessageResult> {
    const refuse = () => new McpError(-1, 'User rejected sampling request');
    if (endpoint && autoApprove) return forwardSampling(params, endpoint).then((r) => (this.print(`sampled from ${endpoint.model}`), r));
    return this.exclusive(async () => {
      this.output.write(`\nThe server asks for a model's reply:\n${describeSampling(params)}\n`);
      try {
        if (endpoint) {
          const ok = await this.prompts.select({
            message: `Send to ${endpoint.model}?`,
            choices: [
              { name: 'Send', value: true },
              { name: 'Decline', value: false },
            ],
          });
          if (!ok) throw refuse();
          const r = await forwardSampling(params, endpoint);
          this.output.write(`${endpoint.model} replied: ${r.content.type === 'text' ? r.content.text : `[${r.content.type}]`}\n`);
          return r;
        }
        const how = await this.prompts.select({
          message: 'Answer?',
          choices: [
            { name: 'Reply', value: 'reply' },
            { name: 'Decline', value: 'decline' },
          ],
        });
        if (how === 'decline') throw refuse();
        return typedReply(await this.prompts.reply('Reply'));
      } catch (e) {
        if (isPromptExit(e)) throw refuse();
        throw e;
      }
    });
  }

  /** Picks one item by typing part of its name. */
  choose<T>(message: string, items: Array<{ name: string; value: T; description?: string }>): Promise<T> {
    return this.exclusive(() => this.prompts.search({ message, items }));
  }

  menu<T extends string>(message: string, choices: Array<{ name: string; value: T }>): Promise<T> {
    return this.exclusive(() => this.prompts.select({ message, choices }));
  }

  askFields(fields: Field[]): Promise<Record<string, unknown>> {
    return this.exclusive(() => this.form(fields));
  }
}
