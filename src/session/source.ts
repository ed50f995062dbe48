// What a session's server is: a command on the host (source-command.ts) or an OCI image (source-image.ts). The one
// choice between them is made per runtime by the composition root (app/berth.ts), as with the Connector; launch.ts
// asks the runtime's source what to start and never asks which kind it is.
import type { Logger } from 'pino';
import type { RuntimeConfig } from '../config/schema.js';
import type { ImageRoot, SandboxDriver } from '../sandbox/index.js';

export interface Preparing {
  runtimeName: string;
  config: RuntimeConfig;
  baseDir: string;
  /** The session's private working directory on the host. */
  workDir: string;
  /** Where session directories live (server.sessionRoot, else the host's temporary directory). */
  sessionRoot: string;
  log: Logger;
  /** Rejects when the runtime closes: a long preparation (an npx install) gives up then. */
  closed?: Promise<never>;
}

/** What one session's sandbox runs; launch adds berth's own variables (BERTH_SESSION_ID, PORT) to env. */
export interface Prepared {
  argv: string[];
  env: Record<string, string>;
  /** Host paths the sandbox sees read-only (the configured mounts, and what a command needs). */
  mounts: string[];
  /** The image's root filesystem, when the server runs inside one. */
  image?: ImageRoot;
}

export interface ServerSource {
  /** How /healthz, the admin API and the logs name it: the command, or the image pinned by its digest. */
  readonly shown: { command?: string[]; image?: string };
  /** Refuses at start (not at every session's start) what cannot run under this driver; throws saying why. */
  check(driver: SandboxDriver, sessionRoot: string): void;
  prepare(p: Preparing): Promise<Prepared>;
}
