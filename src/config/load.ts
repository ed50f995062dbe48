import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { parseDocument } from 'yaml';
import type { z } from 'zod';
import { ConfigSchema, type BerthConfig, type BerthConfigInput } from './schema.js';

export class ConfigError extends Error {}

function describeIssues(source: string, error: z.ZodError): string {
  return error.issues
    .map((i) => {
      const key = i.path.length ? i.path.map(String).join('.') : '(top level)';
      return `${source}: ${key}: ${i.message}`;
    })
    .join('\n');
}

/** Validates a config object; errors name the source, the key and what is wrong. */
export function parseConfig(input: BerthConfigInput | unknown, source = 'config'): BerthConfig {
  const r = ConfigSchema.safeParse(input);
  if (!r.success) throw new ConfigError(describeIssues(source, r.error));
  return r.data;
}

export function loadConfigFile(path: string): BerthConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new ConfigError(`${path}: cannot read: ${(e as Error).message}`);
  }
  const doc = parseDocument(text, { prettyErrors: true });
  if (doc.errors.length) {
    throw new ConfigError(doc.errors.map((e) => `${path}: YAML: ${e.message}`).join('\n'));
  }
  const config = parseConfig(doc.toJS(), path);
  // A runtime's relative cwd is the config file's neighbour, not wherever berth was started: a config (the bundled
  // example's included) then works from any directory, as a compose file's relative paths do.
  for (const rc of Object.values(config.runtimes)) if (rc.cwd !== undefined) rc.cwd = resolve(dirname(resolve(path)), rc.cwd);
  return config;
}
