// The prompts as plain lines, for output that is not a terminal (a pipe, a file, a CI log) or wants no escape codes
// (NO_COLOR, TERM=dumb): a numbered list, then one line read per answer; a wrong answer is said, and asked again.
import { createInterface } from 'node:readline';

export interface Choice<T> {
  name: string;
  value: T;
}

/** The few prompt kinds the Terminal asks with, drawn by inquirer on a terminal or as plain lines. */
export interface Prompts {
  select<T>(o: { message: string; choices: Array<Choice<T>>; default?: T }): Promise<T>;
  /** One item out of many: typed to filter on a terminal. */
  search<T>(o: { message: string; items: Array<Choice<T> & { description?: string }> }): Promise<T>;
  checkbox<T>(o: {
    message: string;
    choices: Array<Choice<T> & { checked?: boolean }>;
    validate: (values: T[]) => true | string;
  }): Promise<T[]>;
  /** A line of text; `prefill` is the answer unless changed; `validate` is true or what is wrong. */
  text(o: { message: string; prefill?: string; validate?: (value: string) => true | string }): Promise<string>;
  /** A line of text that may not be empty. */
  reply(message: string): Promise<string>;
}

/** The input's lines, one per answer, read from the first question on (lines piped in ahead wait for theirs). */
export class LineReader {
  private readonly lines: string[] = [];
  private waiter: ((line: string) => void) | undefined;
  private reading = false;

  /** `gone` is aborted once the input has ended: a question then left without a line rejects with its reason. */
  constructor(
    private readonly input: NodeJS.ReadableStream,
    private readonly gone: AbortSignal,
  ) {}

  next(): Promise<string> {
    if (!this.reading) {
      // Not before the first question: until then the input may be read by others (`--args -`).
      this.reading = true;
      createInterface({ input: this.input, terminal: false, crlfDelay: Infinity }).on('line', (line: string) => {
        const w = this.waiter;
        this.waiter = undefined;
        if (w) w(line);
        else this.lines.push(line);
      });
    }
    if (this.lines.length) return Promise.resolve(this.lines.shift()!);
    if (this.gone.aborted) return Promise.reject(this.gone.reason);
    return new Promise((resolve, reject) => {
      const onGone = () => {
        this.waiter = undefined;
        reject(this.gone.reason);
      };
      this.gone.addEventListener('abort', onGone, { once: true });
      this.waiter = (line) => {
        this.gone.removeEventListener('abort', onGone);
        resolve(line);
      };
    });
  }
}

type Answer<T> = { ok: true; value: T } | { ok: false; error: string };

/**
 * Plain prompts writing with `write` and reading from `lines`. `echo` writes each answer after its question, for
 * output the input is not echoed to (a log then reads as question, answer).
 */
export function plainPrompts(lines: LineReader, write: (text: string) => void, echo: boolean): Prompts {
  const ask = async <T>(question: string, answer: (line: string) => Answer<T>): Promise<T> => {
    for (;;) {
      write(question);
      let line: string;
      try {
        line = await lines.next();
      } catch (e) {
        if (echo) write('\n'); // the question's line ends with the input
        throw e;
      }
      if (echo) write(`${line}\n`);
      const r = answer(line);
      if (r.ok) return r.value;
      write(`! ${r.error}\n`);
    }
  };
  const list = (message: string, names: string[]) => write(`${message}\n${names.map((n, i) => `  ${i + 1}) ${n}\n`).join('')}`);
  const range = (n: number) => (n === 1 ? '1' : `1-${n}`);
  /** A choice by its number or its name (exactly, else in any case). */
  const pick = <T>(choices: Array<Choice<T>>, t: string): Choice<T> | undefined => {
    if (/^\d+$/.test(t)) return choices[Number(t) - 1];
    return choices.find((c) => c.name === t) ?? choices.find((c) => c.name.toLowerCase() === t.toLowerCase());
  };
  const notAChoice = (t: string, n: number) => `"${t}" is not one of the choices: answer ${range(n)} or a name as listed`;

  const select = <T>(o: { message: string; choices: Array<Choice<T>>; default?: T }): Promise<T> => {
    list(
      o.message,
      o.choices.map((c) => c.name),
    );
    const d = o.default === undefined ? -1 : o.choices.findIndex((c) => c.value === o.default);
    const n = o.choices.length;
    return ask(`Choose ${range(n)}${d >= 0 ? ` (Enter for ${d + 1})` : ''}: `, (line) => {
      const t = line.trim();
      if (t === '' && d >= 0) return { ok: true, value: o.choices[d]!.value };
      if (t === '') return { ok: false, error: `no answer: choose ${range(n)}` };
      const c = pick(o.choices, t);
      return c ? { ok: true, value: c.value } : { ok: false, error: notAChoice(t, n) };
    });
  };

  const text = (o: { message: string; prefill?: string; validate?: (value: string) => true | string }): Promise<string> => {
    const prefill = o.prefill || undefined;
    const clearable = prefill !== undefined && (!o.validate || o.validate('') === true);
    const keep = prefill === undefined ? '' : ` [${prefill}] (Enter keeps it${clearable ? ', - leaves it empty' : ''})`;
    return ask(`${o.message}${keep}: `, (line) => {
      const value = line === '' && prefill !== undefined ? prefill : line === '-' && clearable ? '' : line;
      const ok = o.validate ? o.validate(value) : true;
      return ok === true ? { ok: true, value } : { ok: false, error: ok };
    });
  };

  return {
    select,
    search: (o) => select({ message: o.message, choices: o.items }),
    checkbox: <T>(o: { message: string; choices: Array<Choice<T> & { checked?: boolean }>; validate: (values: T[]) => true | string }) => {
      list(
        o.message,
        o.choices.map((c) => `[${c.checked ? 'x' : ' '}] ${c.name}`),
      );
      const n = o.choices.length;
      const ticked = o.choices.flatMap((c, i) => (c.checked ? [i + 1] : []));
      const keep = ticked.length ? `Enter keeps ${ticked.join(', ')}, - for none` : 'Enter for none';
      return ask(`Choose any of ${range(n)}, comma-separated (${keep}): `, (line) => {
        const t = line.trim();
        const parts = t === '' ? ticked.map(String) : t === '-' ? [] : t.split(',').map((x) => x.trim());
        const chosen = new Set<Choice<T>>();
        for (const part of parts) {
          const c = pick(o.choices, part);
          if (!c) return { ok: false, error: notAChoice(part, n) };
          chosen.add(c);
        }
        const values = o.choices.filter((c) => chosen.has(c)).map((c) => c.value); // in the list's order
        const ok = o.validate(values);
        return ok === true ? { ok: true, value: values } : { ok: false, error: ok };
      });
    },
    text,
    reply: (message) => text({ message, validate: (s) => s.trim() !== '' || `${message}: an answer is required` }),
  };
}
