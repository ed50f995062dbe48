// deploy/kubernetes: every manifest validates against the Kubernetes schemas (kubernetes-models), and the things
// those schemas cannot see are checked by hand: cross-references between objects (Services, selectors, named ports,
// Secret and ConfigMap keys, volumes), berth's own config in the ConfigMap (parsed with berth's ConfigSchema), and
// that the pod fits that config (probes, ports, grace period vs drain time, env variables the config names, the
// privileges its isolation driver needs). Every patch in patches/ targets an existing object, and the result of
// applying it passes the same checks. The negative tests break a copy on purpose and expect the checks to notice.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync, cpSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import YAML from 'yaml';
import * as core from 'kubernetes-models/v1';
import * as apps from 'kubernetes-models/apps/v1';
import * as policy from 'kubernetes-models/policy/v1';
import * as net from 'kubernetes-models/networking.k8s.io/v1';
import { ConfigSchema, type BerthConfig } from '../src/config/schema.ts';
import { unsafeRuntimeDir } from '../src/sandbox/host.ts';

const DIR = new URL('../deploy/kubernetes/', import.meta.url).pathname;
const PATCHES = join(DIR, 'patches');

type Obj = Record<string, any>;
type Model = new (data: Obj) => { validate(): void };
const groups: Record<string, Record<string, unknown>> = { v1: core, 'apps/v1': apps, 'policy/v1': policy, 'networking.k8s.io/v1': net };

function parseAll(file: string): Obj[] {
  const docs = YAML.parseAllDocuments(readFileSync(file, 'utf8'));
  for (const d of docs) if (d.errors.length) throw new Error(`${file}: ${d.errors.map((e) => e.message).join('; ')}`);
  return docs.map((d) => d.toJS() as Obj).filter((d) => d !== null);
}

const kustomization = parseAll(join(DIR, 'kustomization.yaml'))[0]!;
const resourceFiles: string[] = kustomization.resources;
const patchFiles = readdirSync(PATCHES)
  .filter((f) => f.endsWith('.yaml'))
  .sort();
const base: Obj[] = resourceFiles.flatMap((f) => parseAll(join(DIR, f)));

const clone = <T>(x: T): T => structuredClone(x);
const id = (d: Obj) => `${d.kind}/${d.metadata?.name}`;
const workloads = (docs: Obj[]) => docs.filter((d) => d.kind === 'StatefulSet' || d.kind === 'Deployment' || d.kind === 'DaemonSet');
const matches = (selector: Obj | undefined, labels: Obj | undefined) =>
  !!selector && Object.keys(selector).length > 0 && Object.entries(selector).every(([k, v]) => labels?.[k] === v);

/** Where a named or numbered port of a pod template is declared, if it is. */
function podPort(template: Obj, port: string | number): { container: Obj; port: Obj } | undefined {
  for (const c of template.spec?.containers ?? []) {
    for (const p of c.ports ?? []) if (p.name === port || p.containerPort === port) return { container: c, port: p };
  }
  return undefined;
}

/** The berth container: the one started with `serve --config FILE`. */
function berthContainer(w: Obj): { container: Obj; configPath: string } | undefined {
  for (const c of w.spec?.template?.spec?.containers ?? []) {
    const words = [...(c.command ?? []), ...(c.args ?? [])].join(' ');
    const m = /\bserve\s+(?:--config|-c)[\s=]+(\S+)/.exec(words);
    if (m) return { container: c, configPath: m[1]! };
  }
  return undefined;
}

/**
 * Every problem found in one set of objects (a rendered kustomization). Empty means fine. Returned rather than
 * asserted so that the negative tests can check that a given breakage is reported.
 */
function problems(docs: Obj[]): string[] {
  const out: string[] = [];
  const seen = new Set<string>();
  for (const d of docs) {
    const model = groups[d.apiVersion]?.[d.kind] as Model | undefined;
    if (!model) {
      out.push(`${id(d)}: no schema for ${d.apiVersion} ${d.kind}`);
      continue;
    }
    try {
      new model(d).validate();
    } catch (e) {
      out.push(`${id(d)}: ${(e as Error).message}`);
    }
    if (seen.has(id(d))) out.push(`${id(d)}: defined twice`);
    seen.add(id(d));
  }
  const named = (kind: string, name: string) => docs.find((d) => d.kind === kind && d.metadata?.name === name);
  const dataKeys = (d: Obj | undefined) => new Set([...Object.keys(d?.data ?? {}), ...Object.keys(d?.stringData ?? {})]);

  for (const w of workloads(docs)) {
    const where = id(w);
    const tpl = w.spec?.template ?? {};
    const pod = tpl.spec ?? {};
    if (!matches(w.spec?.selector?.matchLabels, tpl.metadata?.labels)) out.push(`${where}: selector does not match the template's labels`);
    if (w.kind === 'StatefulSet' && !named('Service', w.spec?.serviceName))
      out.push(`${where}: serviceName ${w.spec?.serviceName} is no Service here`);
    const volumes = new Map<string, Obj>((pod.volumes ?? []).map((v: Obj) => [v.name, v]));
    for (const v of volumes.values()) {
      if (v.configMap && !named('ConfigMap', v.configMap.name)) out.push(`${where}: volume ${v.name}: no ConfigMap ${v.configMap.name}`);
      if (v.secret && !named('Secret', v.secret.secretName)) out.push(`${where}: volume ${v.name}: no Secret ${v.secret.secretName}`);
    }
    for (const c of [...(pod.initContainers ?? []), ...(pod.containers ?? [])]) {
      const cw = `${where} container ${c.name}`;
      if (typeof c.image !== 'string' || !c.image.trim()) out.push(`${cw}: no image`);
      const env = new Set<string>();
      for (const e of c.env ?? []) {
        const s = e.valueFrom?.secretKeyRef;
        const m = e.valueFrom?.configMapKeyRef;
        if (s && !dataKeys(named('Secret', s.name)).has(s.key)) out.push(`${cw}: env ${e.name}: Secret ${s.name} has no key ${s.key}`);
        if (m && !dataKeys(named('ConfigMap', m.name)).has(m.key))
          out.push(`${cw}: env ${e.name}: ConfigMap ${m.name} has no key ${m.key}`);
        // $(VAR) expands only variables defined earlier in the list; anything else stays literally "$(VAR)".
        for (const [, ref] of String(e.value ?? '').matchAll(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g))
          if (!env.has(ref!)) out.push(`${cw}: env ${e.name} uses $(${ref}), not defined before it`);
        env.add(e.name);
      }
      for (const a of [...(c.command ?? []), ...(c.args ?? []), ...(c.env ?? []).map((e: Obj) => e.value ?? '')]) {
        // The kubelet reads "$$" as an escaped "$": a shell's $$ (its pid) would arrive as a lone "$".
        if (/\$\$(?!\()/.test(String(a))) out.push(`${cw}: "$$" in a command, argument or env value becomes "$" (kubelet escaping)`);
      }
      for (const a of [...(c.command ?? []), ...(c.args ?? [])]) {
        for (const [, ref] of String(a).matchAll(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g))
          if (!env.has(ref!)) out.push(`${cw}: argument uses $(${ref}), not in env`);
      }
      for (const m of c.volumeMounts ?? []) if (!volumes.has(m.name)) out.push(`${cw}: mount ${m.mountPath}: no volume ${m.name}`);
      for (const kind of ['livenessProbe', 'readinessProbe', 'startupProbe']) {
        const p = c[kind];
        const port = p?.httpGet?.port ?? p?.tcpSocket?.port;
        if (port !== undefined && !(c.ports ?? []).some((x: Obj) => x.name === port || x.containerPort === port))
          out.push(`${cw}: ${kind} port ${port} is not declared by the container`);
      }
    }
    const b = berthContainer(w);
    if (b) out.push(...berthProblems(w, b.container, b.configPath, docs).map((p) => `${where}: ${p}`));
  }

  for (const s of docs.filter((d) => d.kind === 'Service')) {
    const targets = workloads(docs).filter((w) => matches(s.spec?.selector, w.spec?.template?.metadata?.labels));
    if (!targets.length) out.push(`${id(s)}: selects no pods`);
    for (const p of s.spec?.ports ?? []) {
      const target = p.targetPort ?? p.port;
      for (const w of targets)
        if (!podPort(w.spec.template, target)) out.push(`${id(s)}: targetPort ${target} is not declared by ${id(w)}`);
    }
  }
  for (const d of docs.filter((d) => d.kind === 'PodDisruptionBudget' || d.kind === 'NetworkPolicy')) {
    const selector = d.kind === 'NetworkPolicy' ? d.spec?.podSelector?.matchLabels : d.spec?.selector?.matchLabels;
    const targets = workloads(docs).filter((w) => matches(selector, w.spec?.template?.metadata?.labels));
    if (!targets.length) out.push(`${id(d)}: selects no pods`);
    if (d.kind === 'NetworkPolicy') {
      for (const rule of d.spec?.ingress ?? []) {
        for (const p of rule.ports ?? [])
          for (const w of targets)
            if (!podPort(w.spec.template, p.port)) out.push(`${id(d)}: ingress port ${p.port} is not declared by ${id(w)}`);
      }
    }
  }
  return out;
}

/** The berth pod against berth's own config, read from the ConfigMap the pod mounts at the --config path. */
function berthProblems(w: Obj, c: Obj, configPath: string, docs: Obj[]): string[] {
  const out: string[] = [];
  const pod = w.spec.template.spec;
  const mount = (c.volumeMounts ?? []).find((m: Obj) => configPath.startsWith(`${m.mountPath.replace(/\/$/, '')}/`));
  const volume = (pod.volumes ?? []).find((v: Obj) => v.name === mount?.name);
  const cm = docs.find((d) => d.kind === 'ConfigMap' && d.metadata?.name === volume?.configMap?.name);
  const key = mount && configPath.slice(mount.mountPath.replace(/\/$/, '').length + 1);
  const text = key && cm?.data?.[key];
  if (typeof text !== 'string') return [`--config ${configPath} is not a key of a mounted ConfigMap`];
  const parsed = ConfigSchema.safeParse(YAML.parse(text));
  if (!parsed.success) return parsed.error.issues.map((i) => `${configPath}: ${i.path.join('.') || '(top level)'}: ${i.message}`);
  const config: BerthConfig = parsed.data;
  if (!config.cluster) out.push(`${configPath}: no cluster section`);
  if (config.server.host !== '0.0.0.0' && config.server.host !== '::')
    out.push(`server.host ${config.server.host}: other pods cannot reach it`);

  const http = (c.ports ?? []).find((p: Obj) => p.containerPort === config.server.port);
  if (!http?.name) out.push(`server.port ${config.server.port} is not a named container port`);
  const probe = (kind: string, path: string) => {
    const g = c[kind]?.httpGet;
    if (g?.path !== path) out.push(`${kind} must GET ${path}, not ${g?.path}`);
    else if (g.port !== http?.name && g.port !== config.server.port)
      out.push(`${kind} port ${g.port} is not server.port ${config.server.port}`);
  };
  probe('livenessProbe', '/healthz');
  probe('readinessProbe', '/readyz');

  const env = new Map<string, Obj>((c.env ?? []).map((e: Obj) => [e.name, e]));
  if (env.get('BERTH_NODE_ID')?.valueFrom?.fieldRef?.fieldPath !== 'metadata.name')
    out.push('BERTH_NODE_ID must come from metadata.name (the pod name)');
  if (env.get('POD_IP')?.valueFrom?.fieldRef?.fieldPath !== 'status.podIP') out.push('POD_IP must come from status.podIP');
  const advertise = env.get('BERTH_ADVERTISE_URL')?.value;
  if (advertise !== `http://$(POD_IP):${config.server.port}`)
    out.push(`BERTH_ADVERTISE_URL ${advertise} is not http://$(POD_IP):${config.server.port}`);
  const needed = [config.cluster?.secretEnv, config.cluster?.redisPasswordEnv, config.server.admin?.tokenEnv];
  for (const r of Object.values(config.runtimes)) if (r.auth.kind === 'api-key') needed.push(r.auth.keysEnv);
  for (const n of needed) if (n && !env.has(n)) out.push(`the config reads $${n}, which the container does not set`);
  if (!config.server.admin) out.push('server.admin is not set (the admin API drains nodes)');

  // Redis: a Service of this set, on its port.
  if (config.cluster) {
    const u = new URL(config.cluster.redis);
    const svc = docs.find((d) => d.kind === 'Service' && d.metadata?.name === u.hostname);
    if (!svc) out.push(`cluster.redis host ${u.hostname} is no Service here`);
    else if (!(svc.spec?.ports ?? []).some((p: Obj) => p.port === Number(u.port || 6379)))
      out.push(`Service ${u.hostname} has no port ${u.port || 6379}`);
  }

  // The headless Service behind serviceName: per-pod DNS and, for draining nodes, not-ready addresses.
  const headless = docs.find((d) => d.kind === 'Service' && d.metadata?.name === w.spec.serviceName);
  if (headless && headless.spec?.clusterIP !== 'None') out.push(`serviceName ${w.spec.serviceName} is not headless (clusterIP: None)`);
  if (headless && headless.spec?.publishNotReadyAddresses !== true)
    out.push(`serviceName ${w.spec.serviceName} must publishNotReadyAddresses (draining nodes stay reachable)`);
  if (headless && !matches(headless.spec?.selector, w.spec.template.metadata?.labels))
    out.push(`serviceName ${w.spec.serviceName} does not select these pods`);

  // SIGTERM drains for drainTimeout, then stops the sessions and the pool (stopGrace each) and leaves the cluster;
  // berth exits by itself within drainTimeout + 2 x stopGrace + 10 s (src/cli/main.ts), the least to give it.
  const stopGrace = Math.max(...Object.values(config.runtimes).map((r) => r.limits.stopGrace));
  const needMs = config.server.drainTimeout + 2 * stopGrace + 10_000;
  const grace = pod.terminationGracePeriodSeconds ?? 30;
  if (grace * 1000 <= needMs)
    out.push(`terminationGracePeriodSeconds ${grace} must exceed drainTimeout + 2 × stopGrace + 10 s = ${needMs / 1000} s`);
  const live = c.livenessProbe ?? {};
  if ((live.periodSeconds ?? 10) * (live.failureThreshold ?? 3) * 1000 <= config.server.drainTimeout)
    out.push('livenessProbe gives up before drainTimeout (/healthz answers 503 while draining)');

  // Session and state directories on emptyDir volumes; the runtime directory must not hold them.
  const onEmptyDir = (path: string | undefined, what: string) => {
    const m = (c.volumeMounts ?? []).find(
      (x: Obj) => path && (path === x.mountPath || path.startsWith(`${x.mountPath.replace(/\/$/, '')}/`)),
    );
    if (!path || !(pod.volumes ?? []).find((v: Obj) => v.name === m?.name)?.emptyDir)
      out.push(`${what} ${path} is not on an emptyDir volume`);
  };
  onEmptyDir(config.server.sessionRoot, 'server.sessionRoot');
  onEmptyDir(config.server.stateDir, 'server.stateDir');
  for (const [name, r] of Object.entries(config.runtimes)) {
    const unsafe = r.cwd && unsafeRuntimeDir(r.cwd, config.server.sessionRoot ?? '/tmp');
    if (unsafe && r.isolation !== 'process') out.push(`runtime ${name}: ${unsafe}`);
    if (!r.cwd) out.push(`runtime ${name}: no cwd (berth would use the image's working directory)`);
  }

  // The privileges each isolation driver needs in a pod (README.md, docs/design/cluster.md §5).
  const sc = c.securityContext ?? {};
  const privileged = sc.privileged === true;
  const userns =
    pod.hostUsers === false &&
    sc.procMount === 'Unmasked' &&
    (sc.capabilities?.add ?? []).includes('SYS_ADMIN') &&
    sc.seccompProfile?.type === 'Unconfined';
  const kvm = Object.keys(c.resources?.limits ?? {}).some((k) => k.endsWith('/kvm'));
  for (const [name, r] of Object.entries(config.runtimes)) {
    if (r.isolation === 'auto') out.push(`runtime ${name}: isolation auto in a pod could quietly fall back to process; name the driver`);
    if (r.isolation === 'namespace' && !privileged && !userns)
      out.push(`runtime ${name}: the namespace driver needs a privileged or user-namespace pod`);
    if (r.isolation === 'gvisor' && !privileged) out.push(`runtime ${name}: the gvisor driver needs a privileged pod`);
    if (r.isolation === 'microvm' && !privileged && !kvm)
      out.push(`runtime ${name}: the microvm driver needs /dev/kvm (a device plugin resource) or a privileged pod`);
  }
  if (pod.automountServiceAccountToken !== false)
    out.push('automountServiceAccountToken must be false (no session should see an API token)');
  return out;
}

/**
 * A strategic merge patch, as far as these manifests need it: maps merge (null deletes a key), lists of objects
 * merge by their key (containers, env, volumes by name; volumeMounts by mountPath; ports by containerPort), other
 * lists are replaced. When kubectl is installed the real kustomize output is checked as well.
 */
const MERGE_KEYS: Record<string, string> = {
  containers: 'name',
  initContainers: 'name',
  env: 'name',
  volumes: 'name',
  volumeMounts: 'mountPath',
  ports: 'containerPort',
};
function merge(target: Obj, patch: Obj): Obj {
  const out = { ...target };
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else if (Array.isArray(v) && MERGE_KEYS[k] && Array.isArray(out[k])) {
      const key = MERGE_KEYS[k]!;
      const list = [...out[k]];
      for (const item of v) {
        const i = list.findIndex((x: Obj) => x[key] === item[key]);
        if (i >= 0) list[i] = merge(list[i], item);
        else list.push(item);
      }
      out[k] = list;
    } else if (v && typeof v === 'object' && !Array.isArray(v) && out[k] && typeof out[k] === 'object' && !Array.isArray(out[k]))
      out[k] = merge(out[k], v);
    else out[k] = v;
  }
  return out;
}

/** Problems of a patch file against a base set: each document must name an object that exists. */
function patchTargetProblems(patch: Obj[], docs: Obj[]): string[] {
  return patch
    .filter((p) => !docs.some((d) => d.apiVersion === p.apiVersion && d.kind === p.kind && d.metadata?.name === p.metadata?.name))
    .map((p) => `${p.apiVersion} ${id(p)} is not a resource of kustomization.yaml`);
}

function applyPatch(docs: Obj[], patch: Obj[]): Obj[] {
  return docs.map((d) =>
    patch.filter((p) => p.kind === d.kind && p.metadata?.name === d.metadata?.name).reduce((acc, p) => merge(acc, p), d),
  );
}

const kubectl = spawnSync('kubectl', ['version', '--client'], { encoding: 'utf8' }).status === 0;
function kustomize(patchFile?: string): Obj[] {
  const dir = mkdtempSync(join(tmpdir(), 'berth-kustomize-'));
  try {
    cpSync(DIR, join(dir, 'base'), { recursive: true });
    writeFileSync(
      join(dir, 'kustomization.yaml'),
      YAML.stringify({ resources: ['base'], ...(patchFile ? { patches: [{ path: `base/patches/${patchFile}` }] } : {}) }),
    );
    const r = spawnSync('kubectl', ['kustomize', dir], { encoding: 'utf8' });
    assert.equal(r.status, 0, `kubectl kustomize: ${r.stderr}`);
    return YAML.parseAllDocuments(r.stdout).map((d) => d.toJS() as Obj);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe('deploy/kubernetes', () => {
  test('kustomization.yaml lists every manifest, and every listed file exists', () => {
    const onDisk = readdirSync(DIR)
      .filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml')
      .sort();
    assert.deepEqual([...resourceFiles].sort(), onDisk);
    for (const p of kustomization.patches ?? []) assert.ok(patchFiles.includes(p.path.replace(/^patches\//, '')), p.path);
    for (const k of ['Namespace', 'Secret', 'ConfigMap', 'StatefulSet', 'Service', 'NetworkPolicy', 'PodDisruptionBudget'])
      assert.ok(
        base.some((d) => d.kind === k),
        `no ${k}`,
      );
  });

  test('the manifests validate and their cross-references hold', () => {
    assert.deepEqual(problems(base), []);
  });

  test('the berth StatefulSet: headless berth-nodes, three Parallel replicas, an image', () => {
    const sts = base.find((d) => d.kind === 'StatefulSet' && d.metadata.name === 'berth')!;
    assert.equal(sts.spec.serviceName, 'berth-nodes');
    assert.equal(sts.spec.podManagementPolicy, 'Parallel');
    assert.ok(sts.spec.replicas >= 2, 'a cluster of one');
    assert.match(berthContainer(sts)!.container.image, /^[\w.-]+(\/[\w.-]+)+:[\w.-]+$/);
    const pdb = base.find((d) => d.kind === 'PodDisruptionBudget')!;
    assert.equal(pdb.spec.maxUnavailable, 1);
  });

  for (const file of patchFiles) {
    test(`patches/${file} targets existing objects, and the patched set passes every check`, () => {
      const patch = parseAll(join(PATCHES, file));
      assert.ok(patch.length > 0, 'an empty patch');
      assert.deepEqual(patchTargetProblems(patch, base), []);
      const patched = applyPatch(base, patch);
      assert.notDeepEqual(patched, base, 'the patch changes nothing');
      assert.deepEqual(problems(patched), []);
    });
  }

  test(
    'kubectl kustomize builds the base and each patch, and the output passes every check',
    { skip: kubectl ? false : 'kubectl is not installed' },
    () => {
      assert.deepEqual(problems(kustomize()), []);
      for (const file of patchFiles) {
        const out = kustomize(file);
        assert.ok(
          out.every((d) => d.kind === 'Namespace' || d.metadata.namespace === 'berth'),
          'namespace: berth applied',
        );
        assert.deepEqual(problems(out), [], file);
      }
    },
  );

  test('the README documents the image and every patch', () => {
    const readme = readFileSync(join(DIR, 'README.md'), 'utf8');
    const sts = base.find((d) => d.kind === 'StatefulSet' && d.metadata.name === 'berth')!;
    assert.ok(readme.includes(berthContainer(sts)!.container.image), 'the image is not named in README.md');
    for (const f of patchFiles) assert.ok(readme.includes(`patches/${f}`), `README.md does not mention patches/${f}`);
  });

  // Each breakage must be reported: proof that the checks above are not vacuous.
  const sts = (docs: Obj[]) => docs.find((d) => d.kind === 'StatefulSet' && d.metadata.name === 'berth')!;
  const berth = (docs: Obj[]) => sts(docs).spec.template.spec.containers[0];
  const configMap = (docs: Obj[]) => docs.find((d) => d.kind === 'ConfigMap')!;
  const service = (docs: Obj[], name: string) => docs.find((d) => d.kind === 'Service' && d.metadata.name === name)!;
  const breakages: Array<[string, (docs: Obj[]) => void, RegExp]> = [
    ['containerPort as a string', (d) => (berth(d).ports[0].containerPort = '8787'), /must be integer/],
    ['a missing selector', (d) => delete sts(d).spec.selector, /must have required property '?selector'?/],
    [
      'a typo in a probe field (schema-valid) drops the readiness probe',
      (d) => ((berth(d).readinessProb = berth(d).readinessProbe), delete berth(d).readinessProbe),
      /readinessProbe must GET \/readyz/,
    ],
    ['a probe on an undeclared port', (d) => (berth(d).livenessProbe.httpGet.port = 'web'), /livenessProbe port web is not declared/],
    ['readiness on /healthz', (d) => (berth(d).readinessProbe.httpGet.path = '/healthz'), /readinessProbe must GET \/readyz/],
    ['a missing image', (d) => delete berth(d).image, /no image/],
    [
      'a secretKeyRef to a missing key',
      (d) => (berth(d).env.find((e: Obj) => e.name === 'BERTH_API_KEYS').valueFrom.secretKeyRef.key = 'api-key'),
      /Secret berth has no key api-key/,
    ],
    [
      'selector and labels apart',
      (d) => (sts(d).spec.template.metadata.labels['app.kubernetes.io/component'] = 'nodes'),
      /selector does not match/,
    ],
    ['serviceName not a Service', (d) => (sts(d).spec.serviceName = 'berth-peers'), /serviceName berth-peers is no Service/],
    [
      'headless Service hiding not-ready pods',
      (d) => (service(d, 'berth-nodes').spec.publishNotReadyAddresses = false),
      /publishNotReadyAddresses/,
    ],
    [
      'grace period below the drain time',
      (d) => (sts(d).spec.template.spec.terminationGracePeriodSeconds = 30),
      /terminationGracePeriodSeconds 30 must exceed/,
    ],
    ['an unknown key in berth.yaml', (d) => (configMap(d).data['berth.yaml'] += '\nserver2: {}\n'), /Unrecognized key/],
    [
      'berth.yaml without cluster',
      (d) => (configMap(d).data['berth.yaml'] = configMap(d).data['berth.yaml'].replace(/\ncluster:[\s\S]*$/, '\n')),
      /no cluster section/,
    ],
    [
      'berth listening on loopback',
      (d) => (configMap(d).data['berth.yaml'] = configMap(d).data['berth.yaml'].replace('host: 0.0.0.0', 'host: 127.0.0.1')),
      /server.host 127.0.0.1/,
    ],
    [
      'an env variable the config reads but the pod lacks',
      (d) => (berth(d).env = berth(d).env.filter((e: Obj) => e.name !== 'BERTH_CLUSTER_SECRET')),
      /reads \$BERTH_CLUSTER_SECRET/,
    ],
    [
      'namespace isolation in an unprivileged pod',
      (d) => (berth(d).securityContext = { privileged: false }),
      /namespace driver needs a privileged or user-namespace pod/,
    ],
    ['a Service port the pods lack', (d) => (service(d, 'berth').spec.ports[0].targetPort = 'https'), /targetPort https is not declared/],
    [
      'a shell $$ the kubelet would unescape',
      (d) => (berth(d).args[0] = berth(d).args[0].replace('echo 0 >', () => 'echo $$ >')),
      /"\$\$" in a command/,
    ],
    [
      'a mount without its volume',
      (d) => (sts(d).spec.template.spec.volumes = sts(d).spec.template.spec.volumes.filter((v: Obj) => v.name !== 'state')),
      /no volume state/,
    ],
  ];
  for (const [what, breakIt, expected] of breakages) {
    test(`a broken copy is caught: ${what}`, () => {
      const docs = clone(base);
      breakIt(docs);
      const found = problems(docs);
      assert.ok(
        found.some((p) => expected.test(p)),
        `expected ${expected} among:\n${found.join('\n')}`,
      );
    });
  }

  test('a patch naming an object that does not exist is caught', () => {
    const patch = [{ apiVersion: 'apps/v1', kind: 'StatefulSet', metadata: { name: 'berth-node' }, spec: {} }];
    assert.match(patchTargetProblems(patch, base).join('\n'), /StatefulSet\/berth-node is not a resource/);
    const wrongGroup = [{ apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'berth' } }];
    assert.equal(patchTargetProblems(wrongGroup, base).length, 1);
  });
});
