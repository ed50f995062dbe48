// Writes docs/config.schema.json and docs/config.md from the zod schema berth validates with.
// Run: npm run schema (the test suite checks that the committed files are current).
import { writeFileSync } from 'node:fs';
import { isDeepStrictEqual } from 'node:util';
import { z } from 'zod';
import { ConfigSchema } from '../src/config/schema.ts';

type Node = {
  type?: string | string[];
  description?: string;
  default?: unknown;
  properties?: Record<string, Node>;
  additionalProperties?: Node | boolean;
  anyOf?: Node[];
  oneOf?: Node[];
  const?: unknown;
  enum?: unknown[];
  items?: Node;
  pattern?: string;
};

/** A default as the table shows it: its JSON (an object or a list too), in a code span a table cell can hold. */
const shown = (d: unknown) => (d === undefined ? '' : `\`${JSON.stringify(d).replaceAll('|', '\\|')}\``);

/** zod leaves out the default of a schema that transforms anywhere inside (a duration, a header name lower-cased, an
 * auth kind with durations): a zod default is an output value, not always a valid input. Where it is one, and means
 * itself (parsing it gives it back: `{"kind":"none"}`, `[]`), it is put back, for editors and the table. Where it is
 * not, a key the table lists would show no default: that stops the generator (an object whose keys the table lists
 * one by one, each with its own default, is fine). */
const keepDefaults: NonNullable<Parameters<typeof z.toJSONSchema>[1]>['override'] = ({ zodSchema, jsonSchema, path }) => {
  const def = zodSchema._zod.def;
  if (def.type !== 'default' || jsonSchema.default !== undefined) return;
  const value: unknown = (def as z.core.$ZodDefaultDef).defaultValue;
  const parsed = z.safeParse(zodSchema, value);
  if (parsed.success && isDeepStrictEqual(parsed.data, value)) jsonSchema.default = JSON.parse(JSON.stringify(value)) as unknown;
  else if (!jsonSchema.properties)
    throw new Error(`${path.join('/')}: the default ${JSON.stringify(value)} is not a valid input; give the input form with .prefault()`);
};

export function generate(): { json: string; markdown: string } {
  const schema = z.toJSONSchema(ConfigSchema, { io: 'input', override: keepDefaults }) as Node;
  const rows: string[] = [];
  const typeOf = (n: Node): string => {
    if (n.enum) return n.enum.map((e) => `\`${String(e)}\``).join(' \\| ');
    if (n.anyOf) return n.anyOf.map(typeOf).join(' or ');
    if (n.type === 'array') return `list of ${n.items ? typeOf(n.items) : 'values'}`;
    return String(n.type ?? 'object');
  };
  const walk = (n: Node, path: string) => {
    if (n.properties) {
      for (const [k, v] of Object.entries(n.properties)) {
        const p = path ? `${path}.${k}` : k;
        if (v.properties && !v.description?.startsWith('Named')) {
          walk(v, p);
          continue;
        }
        // A union of objects told apart by `kind` (auth): the kinds, then each kind's own keys.
        const kinds = v.oneOf?.filter((o) => o.properties?.kind?.const !== undefined);
        rows.push(
          `| \`${p}\` | ${kinds?.length ? `object: \`kind\` ${kinds.map((o) => `\`${String(o.properties!.kind!.const)}\``).join(' \\| ')}` : typeOf(v)} | ${shown(v.default)} | ${v.description ?? ''} |`,
        );
        for (const o of kinds ?? [])
          for (const [k, w] of Object.entries(o.properties!))
            if (k !== 'kind')
              rows.push(
                `| \`${p}.${k}\` | ${typeOf(w)} | ${shown(w.default)} | (kind \`${String(o.properties!.kind!.const)}\`) ${w.description ?? ''} |`,
              );
        if (typeof v.additionalProperties === 'object') walk(v.additionalProperties, `${p}.NAME`);
      }
    }
  };
  walk(schema, '');
  const markdown = `# Configuration reference

Generated from \`src/config/schema.ts\` by \`npm run schema\`; do not edit by hand. The same schema validates
\`berth serve --config FILE\` (errors name the file, the key and what is wrong) and is published as
[config.schema.json](config.schema.json) for editors.

Durations and sizes always carry their unit; only \`0\` goes without (a bare \`900000\` is refused, naming the key).
Durations: a number with \`ms\`, \`s\`, \`m\` or \`h\` (\`250ms\`, \`15m\`, \`8h\`), at most 24 days. Sizes: a number with
\`B\`, \`KiB\`, \`MiB\` or \`GiB\` (\`4MiB\`); \`K\`/\`KB\`, \`M\`/\`MB\` and \`G\`/\`GB\` are read as the same binary units.

| key | type | default | meaning |
|---|---|---|---|
${rows.join('\n')}

See [examples/berth.yaml](../examples/berth.yaml) for a complete file.
`;
  return { json: JSON.stringify(schema, null, 2) + '\n', markdown };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { json, markdown } = generate();
  writeFileSync(new URL('../docs/config.schema.json', import.meta.url), json);
  writeFileSync(new URL('../docs/config.md', import.meta.url), markdown);
  console.log('wrote docs/config.schema.json and docs/config.md');
}
