export { createRuntime, Berth, type BerthEvents, type CreateRuntimeOptions } from './app/berth.js';
export { parseConfig, loadConfigFile, ConfigError } from './config/load.js';
export { ConfigSchema, type BerthConfig, type BerthConfigInput, type RuntimeConfig, type RuntimeConfigInput } from './config/schema.js';
export type { Session, EndReason } from './session/session.js';
export type { SandboxDriver, Sandbox, SandboxSpec } from './sandbox/index.js';
export { parseDuration, parseSize } from './util/units.js';
