/** How the suite's checks.json files become table cells. */
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { ROOT } from './processes.js';

/** The 2025 revisions' suite, and how npx runs it: releases after 0.1.13 need Node 22, so npx puts node@22 first on its PATH. */
export const SUITE_PACKAGE = '@modelcontextprotocol/conformance@0.1.16';
export const NPX_PREFIX = ['-y', '-p', 'node@22', '-p', SUITE_PACKAGE, '--', 'conformance'];
/** The suite's 2026-07-28 requirements ship in its 0.2.0 pre-releases (frozen list, --requirements). */
export const SUITE_2026 = '@modelcontextprotocol/conformance@0.2.0-alpha.12';
export const NPX_2026 = ['-y', '-p', 'node@22', '-p', SUITE_2026, '--', 'conformance'];

export type Outcome = 'pass' | 'fail' | 'error' | 'n/a' | 'not-run';

export interface CheckSummary {
  id: string;
  name?: string;
  status: string;
  description?: string;
  errorMessage?: string;
  details?: unknown;
}

export interface CellResult {
  outcome: Outcome;
  /** SUCCESS checks */
  passed: number;
  /** FAILURE checks */
  failed: number;
  warnings: number;
  failures: CheckSummary[];
  warningChecks: CheckSummary[];
  reason?: string;
  checksFile?: string;
  log?: string;
  durationMs?: number;
}

export const notRun = (outcome: Outcome, reason?: string): CellResult => ({
  outcome,
  passed: 0,
  failed: 0,
  warnings: 0,
  failures: [],
  warningChecks: [],
  ...(reason ? { reason } : {}),
});

export function newestChecksFile(dir: string): string | undefined {
  if (!existsSync(dir)) return undefined;
  const found = readdirSync(dir)
    .map((d) => join(dir, d, 'checks.json'))
    .filter((f) => existsSync(f))
    .sort((a, b) => statSync(b).mtimeMs - statSync(a).mtimeMs);
  return found[0];
}

const brief = (c: CheckSummary): CheckSummary => ({
  id: c.id,
  ...(c.name ? { name: c.name } : {}),
  status: c.status,
  ...(c.description ? { description: c.description } : {}),
  ...(c.errorMessage ? { errorMessage: c.errorMessage } : {}),
  ...(c.details !== undefined ? { details: c.details } : {}),
});

/**
 * Several scenarios only look for *some* text content in a tool result, so calling a tool the server
 * does not have ("Tool x not found", isError: true) passes them. Where a check records the tool
 * result, an isError result fails the scenario here (except in tools-call-error, which expects one).
 */
export function harnessFailures(scenario: string, checks: CheckSummary[]): CheckSummary[] {
  if (scenario === 'tools-call-error') return [];
  const out: CheckSummary[] = [];
  for (const c of checks) {
    const result = (c.details as { result?: { isError?: unknown; content?: { text?: unknown }[] } } | undefined)?.result;
    if (c.status !== 'SUCCESS' || result?.isError !== true) continue;
    const text = result.content
      ?.map((x) => (typeof x.text === 'string' ? x.text : ''))
      .join(' ')
      .trim();
    out.push({
      id: `harness/${c.id}-is-error`,
      status: 'FAILURE',
      description: `added by scripts/conformance.ts: check ${c.id} passed on a tool result with isError: true`,
      errorMessage: `tool call returned isError: true${text ? `: ${text}` : ''}`,
    });
  }
  return out;
}

/** A scenario's cell from its checks: any FAILURE (or a harness failure) fails it. */
export function judge(scenario: string, checks: CheckSummary[], file: string): CellResult {
  const failures = [...checks.filter((c) => c.status === 'FAILURE').map(brief), ...harnessFailures(scenario, checks)];
  const warningChecks = checks.filter((c) => c.status === 'WARNING').map(brief);
  return {
    outcome: failures.length ? 'fail' : 'pass',
    passed: checks.filter((c) => c.status === 'SUCCESS').length,
    failed: failures.length,
    warnings: warningChecks.length,
    failures,
    warningChecks,
    checksFile: relative(ROOT, file),
  };
}

export function cellText(c: CellResult): string {
  switch (c.outcome) {
    case 'pass':
      return `pass ${c.passed}/${c.passed}` + (c.warnings ? ` +${c.warnings}w` : '');
    case 'fail':
      return `FAIL ${c.failed}/${c.passed + c.failed}` + (c.warnings ? ` +${c.warnings}w` : '');
    case 'error':
      return 'ERROR';
    case 'n/a':
      return 'n/a';
    case 'not-run':
      return '-';
  }
}

/** `<dir>/server-<scenario>-<ISO time>/checks.json` → scenario name → its newest checks file. */
export function checksByScenario(dir: string): Map<string, string> {
  const out = new Map<string, string>();
  if (!existsSync(dir)) return out;
  for (const d of readdirSync(dir).sort()) {
    const m = d.match(/^server-(.+)-\d{4}-\d\d-\d\dT[\d-]+Z$/);
    const f = join(dir, d, 'checks.json');
    if (m && existsSync(f)) out.set(m[1]!, f);
  }
  return out;
}
