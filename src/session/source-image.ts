// An OCI image (sandbox/image.ts resolved and unpacked it at start): the server is what the image's config says
// (entrypoint and cmd, env, working directory, user), or the runtime's command run inside the image. The sandbox's
// root is the image's, read-only, with a writable layer per session (the driver's job); nothing of the host's
// filesystem is shown but the configured mounts and the session's own working directory.
import { commandArgv, type RuntimeConfig } from '../config/schema.js';
import { imageProblem, type SandboxDriver } from '../sandbox/index.js';
import type { ResolvedImage } from '../sandbox/image.js';
import { passedEnv } from './source-command.js';
import type { Preparing, Prepared, ServerSource } from './source.js';

/** AgentCore's contract: the image's server listens on 0.0.0.0:8000 and serves Streamable HTTP at /mcp. */
export const AGENTCORE_PORT = 8000;

/** The port an image's HTTP server listens on inside its own network. */
export function imagePort(config: RuntimeConfig, image: ResolvedImage): number {
  return config.imagePort ?? image.exposedPort ?? AGENTCORE_PORT;
}

export function imageSource(config: RuntimeConfig, image: ResolvedImage): ServerSource {
  const argv = config.command ? commandArgv(config.command) : image.process.args;
  return {
    shown: { image: image.pinned, ...(config.command ? { command: argv } : {}) },
    check(driver: SandboxDriver) {
      if (argv.length === 0) throw new Error(`the image ${image.ref} names no entrypoint or cmd; set command`);
      const why = imageProblem(driver);
      if (why) throw new Error(why);
      if (config.upstream === 'http' && config.network === 'host')
        throw new Error(
          `network host: every session's server from the image listens on port ${imagePort(config, image)}, so on the host's network two sessions would clash; use network none or egress`,
        );
    },
    async prepare(p: Preparing): Promise<Prepared> {
      // The image's variables first (its PATH is the one that means something inside it), then the runtime's own.
      const env = { ...image.process.env, ...passedEnv(config, []) };
      env.HOME ??= p.workDir;
      const { cwd, uid, gid } = image.process;
      return { argv, env, mounts: config.mounts, image: { rootfs: image.rootfs, cwd, uid, gid } };
    },
  };
}
