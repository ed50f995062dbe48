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
        rows.push(
          `| \`${p}\` | ${typeOf(v)} | ${v.default === undefined ? '' : `\`${JSON.stringify(v.default)}\``} | ${v.description ?? ''} |`,
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

Durations are a number of milliseconds or a string with \`ms\`, \`s\`, \`m\` or \`h\` (\`250ms\`, \`15m\`, \`8h\`).
Sizes are a number of bytes or a string with \`B\`, \`KiB\`, \`MiB\` or \`GiB\` (\`4MiB\`).

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
