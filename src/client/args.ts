// Tool arguments from the command line: --args JSON (or - for stdin) and --arg NAME=VALUE, typed by the tool's schema.
import { fieldsOf, parseField, type Field } from './form.js';

export async function readStdin(stream: NodeJS.ReadableStream = process.stdin): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(Buffer.isBuffer(c) ? c : Buffer.from(c as string));
  return Buffer.concat(chunks).toString('utf8');
}

export function parseArgsJson(text: string, from: string): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new Error(`${from}: not JSON (${(e as Error).message})`, { cause: e });
  }
  if (!v || typeof v !== 'object' || Array.isArray(v)) throw new Error(`${from}: expected a JSON object of arguments`);
  return v as Record<string, unknown>;
}

/** Whether an object schema lets in names it does not list (additionalProperties or patternProperties). */
function takesAnyName(schema: unknown): boolean {
  const s = (schema ?? {}) as { additionalProperties?: unknown; patternProperties?: unknown };
  return (s.additionalProperties !== undefined && s.additionalProperties !== false) || s.patternProperties !== undefined;
}

/** Merges --args and --arg pairs; a pair's value is read as its field's type says (a number for a number field). */
export async function toolArgs(
  json: string | undefined,
  pairs: string[],
  inputSchema: unknown,
  stdin?: NodeJS.ReadableStream,
): Promise<Record<string, unknown>> {
  const args =
    json === undefined ? {} : json === '-' ? parseArgsJson(await readStdin(stdin), 'arguments on stdin') : parseArgsJson(json, '--args');
  const fields = new Map<string, Field>(fieldsOf(inputSchema).map((f) => [f.name, f]));
  for (const p of pairs) {
    const i = p.indexOf('=');
    if (i <= 0) throw new Error(`--arg expects NAME=VALUE, got "${p}"`);
    const name = p.slice(0, i);
    const raw = p.slice(i + 1);
    // With the tool's schema known, a name it does not have is a typo, not an argument to send.
    if (inputSchema !== undefined && !fields.has(name) && !takesAnyName(inputSchema)) {
      throw new Error(
        `--arg ${name}: the tool has no parameter "${name}"; ${fields.size ? `its parameters: ${[...fields.keys()].join(', ')}` : 'it takes no parameters'}`,
      );
    }
    const f = fields.get(name) ?? ({ name, label: name, required: false, kind: 'json' } as Field);
    const r = parseField({ ...f, required: false, default: undefined } as Field, raw);
    if (!r.ok) throw new Error(`--arg ${r.error}`);
    args[name] = r.value ?? raw;
  }
  return args;
}
