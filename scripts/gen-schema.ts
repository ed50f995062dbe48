// Writes docs/config.schema.json and docs/config.md from the zod schema berth validates with.
// Run: npm run schema (the test suite checks that the committed files are current).
import { writeFileSync } from 'node:fs';
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

export function generate(): { json: string; markdown: string } {
  const schema = z.toJSONSchema(ConfigSchema, { io: 'input' }) as Node;
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
          `| \`${p}\` | ${kinds?.length ? `object: \`kind\` ${kinds.map((o) => `\`${String(o.properties!.kind!.const)}\``).join(' \\| ')}` : typeOf(v)} | ${v.default === undefined ? '' : `\`${JSON.stringify(v.default)}\``} | ${v.description ?? ''} |`,
        );
        for (const o of kinds ?? [])
          for (const [k, w] of Object.entries(o.properties!))
            if (k !== 'kind')
              rows.push(
                `| \`${p}.${k}\` | ${typeOf(w)} | ${w.default === undefined ? '' : `\`${JSON.stringify(w.default)}\``} | (kind \`${String(o.properties!.kind!.const)}\`) ${w.description ?? ''} |`,
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
