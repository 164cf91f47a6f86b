/**
 * The Helm charts (helm/agentk, helm/kas), for every documented combination of values:
 * `helm lint --strict`, `helm template` with checks of what was rendered (the agentk container's
 * flags parse with agentk's own flag parser, kas's configuration validates with kas's own schema,
 * probes, ports and security settings line up), and `helm template | kubectl apply --dry-run=server`
 * against a real kube-apiserver. Plus a real `helm install` of each chart into that API server.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { parseFlags } from '../src/agent/flags.js';
import { telemetryFromEnv } from '../src/agent/registration/telemetry.js';
import { validateConfig } from '../src/broker/configuration/schema.js';
import { parseDuration } from '../src/shared/duration.js';
import { Kubectl, assertStdout, assertSucceeded, explain } from '../test/support/kubectl.js';
import { startCluster, type Cluster } from './support/cluster.js';
import { CHARTS, Helm, REPO_ROOT, explainHelm, findObject, kinds, parseManifests, type K8sObject } from './support/helm.js';

type Values = Record<string, unknown>;

interface Container {
  name: string;
  args?: string[];
  env?: Array<{ name: string; value?: string; valueFrom?: unknown }>;
  ports?: Array<{ name: string; containerPort: number }>;
  livenessProbe?: { httpGet?: { path: string; port: string | number } };
  readinessProbe?: { httpGet?: { path: string; port: string | number } };
  securityContext?: { runAsNonRoot?: boolean; readOnlyRootFilesystem?: boolean; allowPrivilegeEscalation?: boolean; capabilities?: { drop?: string[] } };
  volumeMounts?: Array<{ name: string; mountPath: string }>;
  resources?: unknown;
}
interface PodSpec {
  containers: Container[];
  volumes?: Array<{ name: string; secret?: { secretName: string; items?: Array<{ key: string; path: string }> }; configMap?: { name: string } }>;
  serviceAccountName?: string;
  terminationGracePeriodSeconds?: number;
  securityContext?: { runAsNonRoot?: boolean; runAsUser?: number };
}

const NAMESPACE = 'helm-e2e';
const KAS_ADDRESS = 'wss://kas.example.com/';
const AGENT_TOKEN = 'glagent-helm-test-token-0123456789';

function podSpec(objects: K8sObject[]): PodSpec {
  return ((findObject(objects, 'Deployment').spec as { template: { spec: PodSpec } }).template.spec);
}

function container(objects: K8sObject[]): Container {
  const spec = podSpec(objects);
  expect(spec.containers).toHaveLength(1);
  return spec.containers[0]!;
}

/** Security settings every chart's container must have. */
function checkHardened(objects: K8sObject[]): void {
  const spec = podSpec(objects);
  const sc = container(objects).securityContext ?? {};
  expect({ runAsNonRoot: sc.runAsNonRoot, readOnlyRootFilesystem: sc.readOnlyRootFilesystem, allowPrivilegeEscalation: sc.allowPrivilegeEscalation, drop: sc.capabilities?.drop }).toEqual({
    runAsNonRoot: true,
    readOnlyRootFilesystem: true,
    allowPrivilegeEscalation: false,
    drop: ['ALL'],
  });
  expect(spec.securityContext?.runAsNonRoot).toBe(true);
  expect(typeof spec.securityContext?.runAsUser).toBe('number');
  expect(container(objects).resources).toBeDefined();
}

/** The probes hit /liveness and /readiness on the named container port `port`. */
function checkProbes(objects: K8sObject[], port: number): void {
  const c = container(objects);
  const named = (p: string | number | undefined) => (typeof p === 'number' ? p : c.ports?.find((x) => x.name === p)?.containerPort);
  expect({ liveness: c.livenessProbe?.httpGet?.path, livenessPort: named(c.livenessProbe?.httpGet?.port), readiness: c.readinessProbe?.httpGet?.path, readinessPort: named(c.readinessProbe?.httpGet?.port) }).toEqual({
    liveness: '/liveness',
    livenessPort: port,
    readiness: '/readiness',
    readinessPort: port,
  });
}

/** The file a container path comes from: [volume, key] for secret and configMap volumes. */
function mountedFile(objects: K8sObject[], file: string): { volume: NonNullable<PodSpec['volumes']>[number]; key: string } {
  const spec = podSpec(objects);
  const mount = container(objects).volumeMounts?.find((m) => file.startsWith(`${m.mountPath.replace(/\/$/, '')}/`));
  if (!mount) throw new Error(`${file} is on no volume mount of the container`);
  const volume = spec.volumes?.find((v) => v.name === mount.name);
  if (!volume) throw new Error(`volume ${mount.name} (mounted at ${mount.mountPath}) is not defined`);
  const rel = file.slice(mount.mountPath.replace(/\/$/, '').length + 1);
  const items = volume.secret?.items;
  const key = items ? items.find((i) => i.path === rel)?.key : rel;
  if (!key) throw new Error(`${file}: volume ${mount.name} has no item with path ${rel}`);
  return { volume, key };
}

/** Checks shared by every agentk rendering; returns the parsed agentk flags. */
function checkAgentk(objects: K8sObject[], expectedSecret: string | null) {
  checkHardened(objects);
  checkProbes(objects, 8080);
  const c = container(objects);
  const command = parseFlags(c.args ?? []);
  if (command.command !== 'run') throw new Error(`the container's args ask agentk for --help: ${JSON.stringify(c.args)}`);
  const { flags } = command;
  expect(flags.kasAddress.href).toBe(KAS_ADDRESS);
  expect(flags.observabilityListenAddress.port).toBe(8080);
  if (!flags.tokenFile) throw new Error(`agentk gets no --token-file: ${JSON.stringify(c.args)}`);
  const token = mountedFile(objects, flags.tokenFile);
  expect(token.key).toBe('token');
  const secretName = token.volume.secret?.secretName;
  if (expectedSecret === null) {
    const secret = findObject(objects, 'Secret', secretName);
    expect(Buffer.from((secret.data as Record<string, string>).token!, 'base64').toString()).toBe(AGENT_TOKEN);
  } else {
    expect(secretName).toBe(expectedSecret);
    expect(objects.filter((o) => o.kind === 'Secret')).toEqual([]);
  }
  const sa = podSpec(objects).serviceAccountName;
  findObject(objects, 'ServiceAccount', sa);
  // What agentk registers with: the pod's UID from the downward API, and telemetry agentk accepts whole.
  const env = c.env ?? [];
  expect(env.find((e) => e.name === 'POD_UID')?.valueFrom).toEqual({ fieldRef: { fieldPath: 'metadata.uid' } });
  const literal = Object.fromEntries(env.filter((e) => e.value !== undefined).map((e) => [e.name, e.value]));
  const { telemetry, skipped } = telemetryFromEnv(literal);
  expect(skipped).toEqual([]);
  expect(telemetry).toEqual({ installation_method: 'helm', helm_chart_version: (parseYaml(readFileSync(path.join(REPO_ROOT, 'helm/agentk/Chart.yaml'), 'utf8')) as { version: string }).version });
  return flags;
}

function clusterRoleBinding(objects: K8sObject[], role: string): K8sObject {
  const binding = objects.find((o) => o.kind === 'ClusterRoleBinding' && (o.roleRef as { name: string }).name === role);
  if (!binding) throw new Error(`no ClusterRoleBinding to ${role}; rendered: ${kinds(objects).join(', ')}`);
  const subjects = binding.subjects as Array<{ kind: string; name: string; namespace: string }>;
  expect(subjects).toEqual([{ kind: 'ServiceAccount', name: podSpec(objects).serviceAccountName, namespace: NAMESPACE }]);
  return binding;
}

type Rule = { apiGroups: string[]; resources: string[]; verbs: string[]; resourceNames?: string[] };
const FEATURE_LABEL = 'gitlab.com/agentk-feature';
const FLUX_NAMESPACE = 'flux-apps';
const READ = ['get', 'list', 'watch'];

/** The RBAC objects of agentk's features (templates/features-rbac.yaml), as "Kind/name" sorted. */
function featureObjects(objects: K8sObject[]): string[] {
  return kinds(objects.filter((o) => o.metadata.labels?.[FEATURE_LABEL] !== undefined));
}

/** The rules of a feature's ClusterRole, checked to be bound to agentk's ServiceAccount. */
function featureClusterRole(objects: K8sObject[], feature: string): Rule[] {
  const role = findObject(objects, 'ClusterRole', `e2e-agentk-${feature}`);
  expect(role.metadata.labels?.[FEATURE_LABEL]).toBe(feature);
  clusterRoleBinding(objects, role.metadata.name);
  return role.rules as Rule[];
}

/** The rules of a feature's Role in `namespace`, checked to be bound to agentk's ServiceAccount. */
function featureRole(objects: K8sObject[], name: string, namespace: string): Rule[] {
  const role = objects.find((o) => o.kind === 'Role' && o.metadata.name === `e2e-agentk-${name}` && o.metadata.namespace === namespace);
  if (!role) throw new Error(`no Role e2e-agentk-${name} in ${namespace}; rendered: ${kinds(objects).join(', ')}`);
  const binding = objects.find((o) => o.kind === 'RoleBinding' && o.metadata.namespace === namespace && (o.roleRef as { kind: string; name: string }).name === role.metadata.name);
  if (!binding) throw new Error(`no RoleBinding to Role ${role.metadata.name} in ${namespace}`);
  expect((binding.roleRef as { kind: string }).kind).toBe('Role');
  expect(binding.subjects).toEqual([{ kind: 'ServiceAccount', name: podSpec(objects).serviceAccountName, namespace: NAMESPACE }]);
  return role.rules as Rule[];
}

const WORKLOAD_HEALTH_RULES: Rule[] = [
  { apiGroups: [''], resources: ['pods'], verbs: READ },
  { apiGroups: ['apps'], resources: ['deployments', 'statefulsets', 'daemonsets'], verbs: READ },
  { apiGroups: ['batch'], resources: ['jobs'], verbs: READ },
];
const FLUX_RULES: Rule[] = [
  { apiGroups: ['source.toolkit.fluxcd.io'], resources: ['gitrepositories'], verbs: READ },
  { apiGroups: ['notification.toolkit.fluxcd.io'], resources: ['receivers'], verbs: ['get', 'list', 'watch', 'create', 'update', 'patch', 'delete'] },
];
const FLUX_SECRETS_RULE: Rule = { apiGroups: [''], resources: ['secrets'], verbs: ['create', 'get', 'update', 'delete'] };

const agentkBase = { config: { kasAddress: KAS_ADDRESS, token: AGENT_TOKEN } };
const agentkCases: Array<{ name: string; values: Values; check: (objects: K8sObject[]) => void }> = [
  {
    name: 'default (kasAddress and token only)',
    values: agentkBase,
    check(objects) {
      const flags = checkAgentk(objects, null);
      expect(flags.kasConnections).toBe(2);
      expect(flags.kasCaCertFile).toBeUndefined();
      const binding = clusterRoleBinding(objects, findObject(objects, 'ClusterRole').metadata.name);
      expect(binding).toBeDefined();
      const rules = findObject(objects, 'ClusterRole').rules as Array<{ resources: string[]; verbs: string[] }>;
      for (const rule of rules) {
        expect(rule.verbs).toEqual(['get', 'list', 'watch']);
        expect(rule.resources).not.toContain('secrets');
      }
      expect(objects.some((o) => o.kind === 'ClusterRole' && /impersonate/.test(o.metadata.name))).toBe(false);
      const deployment = findObject(objects, 'Deployment');
      expect((deployment.spec as { replicas: number }).replicas).toBe(2);
      const pdb = findObject(objects, 'PodDisruptionBudget');
      expect(pdb.apiVersion).toBe('policy/v1beta1');
      // No feature is on by default: no role of theirs.
      expect(featureObjects(objects)).toEqual([]);
      expect(objects.filter((o) => o.kind === 'Role' || o.kind === 'RoleBinding')).toEqual([]);
      // The installation is reported to kas with the registration.
      const env = Object.fromEntries((container(objects).env ?? []).map((e) => [e.name, e.value]));
      expect(env.GITLAB_AGENT_TELEMETRY_INSTALLATION_METHOD).toBe('helm');
      expect(env.GITLAB_AGENT_TELEMETRY_HELM_CHART_VERSION).toBe((parseYaml(readFileSync(path.join(CHARTS.agentk, 'Chart.yaml'), 'utf8')) as { version: string }).version);
    },
  },
  {
    name: 'features: cluster events and workload health (read only)',
    values: { ...agentkBase, features: { clusterEvents: true, workloadHealth: true } },
    check(objects) {
      checkAgentk(objects, null);
      expect(featureClusterRole(objects, 'cluster-events')).toEqual([{ apiGroups: [''], resources: ['events'], verbs: READ }]);
      expect(featureClusterRole(objects, 'workload-health')).toEqual(WORKLOAD_HEALTH_RULES);
      expect(featureObjects(objects)).toEqual([
        'ClusterRole/e2e-agentk-cluster-events',
        'ClusterRole/e2e-agentk-workload-health',
        'ClusterRoleBinding/e2e-agentk-cluster-events',
        'ClusterRoleBinding/e2e-agentk-workload-health',
      ]);
    },
  },
  {
    name: 'features: gitops (default rules on everything) and flux with secrets in listed namespaces',
    values: { ...agentkBase, features: { gitops: true, flux: true }, flux: { secretNamespaces: [FLUX_NAMESPACE] } },
    check(objects) {
      checkAgentk(objects, null);
      expect(featureClusterRole(objects, 'gitops')).toEqual([{ apiGroups: ['*'], resources: ['*'], verbs: ['create', 'patch', 'update', 'delete', 'get', 'list'] }]);
      expect(featureRole(objects, 'gitops-leader-election', NAMESPACE)).toEqual([{ apiGroups: ['coordination.k8s.io'], resources: ['leases'], verbs: ['get', 'create', 'update'] }]);
      // Secrets only in the listed namespace, not in the ClusterRole.
      expect(featureClusterRole(objects, 'flux')).toEqual(FLUX_RULES);
      expect(featureRole(objects, 'flux-secrets', FLUX_NAMESPACE)).toEqual([FLUX_SECRETS_RULE]);
      expect(featureObjects(objects).filter((o) => /events|health/.test(o))).toEqual([]);
    },
  },
  {
    name: 'features: flux with secrets cluster-wide and its GitLab URLs, gitops with narrowed rules',
    values: {
      ...agentkBase,
      features: { gitops: true, flux: true },
      flux: { gitlabExternalUrls: ['https://gitlab.example.com', 'https://example.org/gitlab'], notificationControllerUrl: 'http://webhook-receiver.flux.svc:80' },
      gitops: { rbac: [{ apiGroups: ['apps'], resources: ['deployments'], verbs: ['create', 'patch', 'get', 'list'] }] },
    },
    check(objects) {
      const flags = checkAgentk(objects, null);
      expect(flags.gitlabExternalUrls.map((u) => u.href)).toEqual(['https://gitlab.example.com/', 'https://example.org/gitlab']);
      expect(flags.fluxNotificationControllerUrl.href).toBe('http://webhook-receiver.flux.svc/');
      expect(featureClusterRole(objects, 'gitops')).toEqual([{ apiGroups: ['apps'], resources: ['deployments'], verbs: ['create', 'patch', 'get', 'list'] }]);
      expect(featureClusterRole(objects, 'flux')).toEqual([...FLUX_RULES, FLUX_SECRETS_RULE]);
      expect(objects.filter((o) => o.kind === 'Role').map((o) => o.metadata.name)).toEqual(['e2e-agentk-gitops-leader-election']);
    },
  },
  {
    name: 'features on with cluster-admin RBAC: no feature roles (cluster-admin grants it all)',
    values: { ...agentkBase, rbac: { clusterAdmin: true }, features: { clusterEvents: true, workloadHealth: true, gitops: true, flux: true } },
    check(objects) {
      checkAgentk(objects, null);
      clusterRoleBinding(objects, 'cluster-admin');
      expect(featureObjects(objects)).toEqual([]);
    },
  },
  {
    name: 'cluster-admin RBAC',
    values: { ...agentkBase, rbac: { clusterAdmin: true } },
    check(objects) {
      checkAgentk(objects, null);
      clusterRoleBinding(objects, 'cluster-admin');
      expect(objects.filter((o) => o.kind === 'ClusterRole')).toEqual([]);
    },
  },
  {
    name: 'existing secret',
    values: { config: { kasAddress: KAS_ADDRESS, secretName: 'my-agent-token' } },
    check(objects) {
      checkAgentk(objects, 'my-agent-token');
    },
  },
  {
    name: 'impersonation',
    values: { ...agentkBase, rbac: { impersonate: { enabled: true, users: ['alice@example.com'], groups: ['viewers'] } } },
    check(objects) {
      checkAgentk(objects, null);
      const role = findObject(objects, 'ClusterRole', `e2e-agentk-impersonate`);
      const rules = role.rules as Array<{ apiGroups: string[]; resources: string[]; verbs: string[]; resourceNames?: string[] }>;
      expect(rules.find((r) => r.resources.includes('users'))).toEqual({ apiGroups: [''], resources: ['users'], verbs: ['impersonate'], resourceNames: ['alice@example.com'] });
      expect(rules.find((r) => r.resources.includes('groups'))).toEqual({ apiGroups: [''], resources: ['groups'], verbs: ['impersonate'], resourceNames: ['viewers'] });
      clusterRoleBinding(objects, role.metadata.name);
    },
  },
  {
    name: 'ServiceMonitor on',
    values: { ...agentkBase, serviceMonitor: { enabled: true, labels: { release: 'prometheus' } } },
    check(objects) {
      checkAgentk(objects, null);
      const monitor = findObject(objects, 'ServiceMonitor');
      expect(monitor.metadata.labels?.release).toBe('prometheus');
      const service = findObject(objects, 'Service');
      const endpoint = (monitor.spec as { endpoints: Array<{ port: string; path: string }> }).endpoints[0]!;
      expect(endpoint.path).toBe('/metrics');
      const port = (service.spec as { ports: Array<{ name: string; port: number }> }).ports.find((p) => p.name === endpoint.port);
      expect(port?.port).toBe(8080);
    },
  },
  {
    name: 'kas CA certificate, extra headers, connections, one replica',
    values: { ...agentkBase, replicas: 1, config: { ...agentkBase.config, kasCaCert: '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----', kasHeaders: ['X-Tenant: blue', 'X-Route: kas-1'], kasConnections: 4 } },
    check(objects) {
      const flags = checkAgentk(objects, null);
      expect(flags.kasConnections).toBe(4);
      expect(flags.kasHeaders).toEqual([['X-Tenant', 'blue'], ['X-Route', 'kas-1']]);
      const ca = mountedFile(objects, flags.kasCaCertFile!);
      const configMap = findObject(objects, 'ConfigMap', (ca.volume.configMap as { name: string }).name);
      expect((configMap.data as Record<string, string>)[ca.key]).toContain('BEGIN CERTIFICATE');
      expect(objects.filter((o) => o.kind === 'PodDisruptionBudget')).toEqual([]);
    },
  },
];

/** Checks shared by every kas rendering; returns kas's validated configuration. */
function checkKas(objects: K8sObject[], values: Values) {
  checkHardened(objects);
  checkProbes(objects, 8151);
  const c = container(objects);
  const configArg = (c.args ?? []).find((a) => a.startsWith('--config='));
  if (!configArg) throw new Error(`kas gets no --config: ${JSON.stringify(c.args)}`);
  const configFile = mountedFile(objects, configArg.slice('--config='.length));
  const configMap = findObject(objects, 'ConfigMap', configFile.volume.configMap!.name);
  const raw = parseYaml((configMap.data as Record<string, string>)[configFile.key]!) as unknown;
  const config = validateConfig(raw);
  // Every listener binds the container port the Service and the probes use.
  const ports = Object.fromEntries((c.ports ?? []).map((p) => [p.name, p.containerPort]));
  const files = [...config.standalone.agents.map((a) => a.token_file), ...config.standalone.proxy_tokens.map((t) => t.token_file)];
  expect({ agent: config.agent.listen.address, kubernetes_api: config.agent.kubernetes_api.listen.address, observability: config.observability.listen.address }).toEqual({
    agent: `0.0.0.0:${ports.agent}`,
    kubernetes_api: `0.0.0.0:${ports['kubernetes-api']}`,
    observability: `0.0.0.0:${ports.observability}`,
  });
  if (config.redis) {
    // Several replicas reach each other's private API at the pod IP.
    expect(config.private_api.listen.address).toBe(`0.0.0.0:${ports['private-api']}`);
    const env = c.env ?? [];
    expect(env.find((e) => e.name === 'POD_IP')?.valueFrom).toEqual({ fieldRef: { fieldPath: 'status.podIP' } });
    expect(env.find((e) => e.name === 'OWN_PRIVATE_API_URL')?.value).toBe(`ws://$(POD_IP):${ports['private-api']}`);
    const secretFile = config.private_api.listen.authentication_secret_file;
    if (!secretFile) throw new Error('redis is configured but private_api.listen.authentication_secret_file is not');
    files.push(secretFile);
  }
  const service = findObject(objects, 'Service', findObject(objects, 'Deployment').metadata.name);
  expect((service.spec as { ports: Array<{ name: string; port: number }> }).ports.map((p) => [p.name, p.port])).toEqual([
    ['agent', 8150],
    ['kubernetes-api', 8154],
    ['observability', 8151],
  ]);
  // Every token file is a key of the mounted Secret.
  const existing = (values.standalone as { existingSecret?: string } | undefined)?.existingSecret;
  for (const file of files) {
    const { volume, key } = mountedFile(objects, file);
    if (existing) {
      expect(volume.secret?.secretName).toBe(existing);
    } else {
      const secret = findObject(objects, 'Secret', volume.secret?.secretName);
      if (!(key in (secret.data as Record<string, string>))) throw new Error(`${file}: key ${key} is not in Secret ${secret.metadata.name}`);
    }
  }
  const grace = podSpec(objects).terminationGracePeriodSeconds ?? 30;
  if (grace * 1000 <= config.agent.tunnel.drain_grace) throw new Error(`terminationGracePeriodSeconds ${grace} is not above drain_grace ${config.agent.tunnel.drain_grace} ms`);
  // After SIGTERM kas serves for shutdown_delay, then drains: the kubelet must wait for both.
  if (grace * 1000 <= config.shutdown_delay + config.agent.tunnel.drain_grace) {
    throw new Error(`terminationGracePeriodSeconds ${grace} is not above shutdown_delay ${config.shutdown_delay} ms + drain_grace ${config.agent.tunnel.drain_grace} ms`);
  }
  return config;
}

const PRIVATE_API_SECRET = randomBytes(32).toString('base64');
const kasStandalone = {
  agents: [
    { id: 1, name: 'production', token: 'glagent-production-0123456789' },
    { id: 2, name: 'staging', token: 'glagent-staging-0123456789' },
  ],
  proxyTokens: [
    { name: 'admin', token: 'proxy-admin-0123456789', agents: [1, 2] },
    { name: 'viewer', token: 'proxy-viewer-0123456789', agents: [1], accessAs: { impersonate: { username: 'viewer@example.com', groups: ['viewers'] } } },
  ],
};
const kasCases: Array<{ name: string; values: Values; check: (objects: K8sObject[], values: Values) => void }> = [
  {
    name: 'default (no agents yet)',
    values: {},
    check(objects, values) {
      const config = checkKas(objects, values);
      expect(config.standalone.agents).toEqual([]);
      // An ingress sends new connections to a terminating pod for a moment: kas keeps serving 5 s.
      expect(config.shutdown_delay).toBe(parseDuration('5s'));
      expect(objects.some((o) => o.kind === 'Ingress' || o.kind === 'PodDisruptionBudget')).toBe(false);
    },
  },
  {
    name: 'standalone agents and proxy tokens',
    values: { standalone: kasStandalone },
    check(objects, values) {
      const config = checkKas(objects, values);
      expect(config.standalone.agents.map((a) => [a.id, a.name])).toEqual([[1, 'production'], [2, 'staging']]);
      expect(config.standalone.proxy_tokens.map((t) => t.access_as)).toEqual([{ agent: {} }, { impersonate: { username: 'viewer@example.com', groups: ['viewers'] } }]);
      const secret = findObject(objects, 'Secret');
      expect(Buffer.from((secret.data as Record<string, string>)['proxy-viewer.token']!, 'base64').toString()).toBe('proxy-viewer-0123456789');
    },
  },
  {
    name: 'existing secret',
    values: { standalone: { ...kasStandalone, agents: kasStandalone.agents.map(({ id, name }) => ({ id, name })), proxyTokens: kasStandalone.proxyTokens.map(({ token: _token, ...rest }) => rest), existingSecret: 'kas-tokens' } },
    check(objects, values) {
      checkKas(objects, values);
      expect(objects.filter((o) => o.kind === 'Secret')).toEqual([]);
    },
  },
  {
    name: 'ingress (ingress-nginx, TLS at the ingress)',
    values: { standalone: kasStandalone, ingress: { enabled: true, host: 'kas.example.com', tlsSecretName: 'kas-example-com-tls' } },
    check(objects, values) {
      const config = checkKas(objects, values);
      const ingress = findObject(objects, 'Ingress');
      const annotations = ingress.metadata.annotations ?? {};
      for (const key of ['nginx.ingress.kubernetes.io/proxy-read-timeout', 'nginx.ingress.kubernetes.io/proxy-send-timeout']) {
        const seconds = Number(annotations[key]);
        // kas pings every ping_interval (20 s); an idle proxy timeout must be far above it.
        if (!(seconds * 1000 >= 10 * config.agent.tunnel.ping_interval)) throw new Error(`${key} is ${annotations[key]}: not far above the ${config.agent.tunnel.ping_interval} ms ping interval`);
      }
      const paths = ((ingress.spec as { rules: Array<{ http: { paths: Array<{ path: string; backend: { service: { port: { name: string } } } }> } }> }).rules[0]!.http.paths).map((p) => [p.path, p.backend.service.port.name]);
      expect(paths).toEqual([
        [config.agent.kubernetes_api.url_path_prefix, 'kubernetes-api'],
        ['/', 'agent'],
      ]);
    },
  },
  {
    name: 'several replicas (Redis, private API)',
    values: { standalone: kasStandalone, replicas: 3, redis: { address: 'redis.gitlab.svc:6379', passwordSecret: { name: 'redis-auth', key: 'redis-password' } }, privateApi: { secret: PRIVATE_API_SECRET } },
    check(objects, values) {
      const config = checkKas(objects, values);
      expect(config.redis?.server?.address).toBe('redis.gitlab.svc:6379');
      const password = mountedFile(objects, config.redis!.password_file!);
      expect([password.volume.secret?.secretName, password.key]).toEqual(['redis-auth', 'redis-password']);
      const secret = findObject(objects, 'Secret', 'e2e-kas-tokens');
      expect((secret.data as Record<string, string>)['private-api.secret']).toBe(Buffer.from(PRIVATE_API_SECRET).toString('base64'));
      expect((findObject(objects, 'Deployment').spec as { replicas: number }).replicas).toBe(3);
      const pdb = findObject(objects, 'PodDisruptionBudget');
      expect(pdb.spec).toMatchObject({ maxUnavailable: 1 });
      expect(JSON.stringify(podSpec(objects))).toContain('podAntiAffinity');
    },
  },
  {
    name: 'Redis Sentinel',
    values: { standalone: kasStandalone, replicas: 2, redis: { sentinel: { masterName: 'kas', addresses: ['sentinel-0:26379', 'sentinel-1:26379'] } }, privateApi: { secret: PRIVATE_API_SECRET } },
    check(objects, values) {
      const config = checkKas(objects, values);
      expect(config.redis?.sentinel).toMatchObject({ master_name: 'kas', addresses: ['sentinel-0:26379', 'sentinel-1:26379'] });
      expect(config.redis?.server).toBeUndefined();
    },
  },
  {
    name: 'TLS on kas listeners, longer drain, ServiceMonitor, extra configuration',
    values: { standalone: kasStandalone, tls: { enabled: true, secretName: 'kas-tls' }, config: { drainGraceSeconds: 60, extra: { agent: { tunnel: { max_streams: 2048 } } } }, terminationGracePeriodSeconds: 75, serviceMonitor: { enabled: true } },
    check(objects, values) {
      const config = checkKas(objects, values);
      expect(config.agent.tunnel.drain_grace).toBe(parseDuration('60s'));
      expect(config.agent.tunnel.max_streams).toBe(2048);
      for (const listen of [config.agent.listen, config.agent.kubernetes_api.listen]) {
        const cert = mountedFile(objects, listen.certificate_file!);
        expect([cert.volume.secret?.secretName, cert.key]).toEqual(['kas-tls', 'tls.crt']);
        expect(mountedFile(objects, listen.key_file!).key).toBe('tls.key');
      }
      findObject(objects, 'ServiceMonitor');
    },
  },
  {
    name: 'longer shutdown delay, grace period above delay + drain grace',
    values: { standalone: kasStandalone, config: { shutdownDelaySeconds: 15, drainGraceSeconds: 20 }, terminationGracePeriodSeconds: 40 },
    check(objects, values) {
      const config = checkKas(objects, values);
      expect(config.shutdown_delay).toBe(parseDuration('15s'));
      expect(config.agent.tunnel.drain_grace).toBe(parseDuration('20s'));
      expect(podSpec(objects).terminationGracePeriodSeconds).toBe(40);
    },
  },
];

const SERVICE_MONITOR_CRD = {
  apiVersion: 'apiextensions.k8s.io/v1',
  kind: 'CustomResourceDefinition',
  metadata: { name: 'servicemonitors.monitoring.coreos.com' },
  spec: {
    group: 'monitoring.coreos.com',
    names: { kind: 'ServiceMonitor', listKind: 'ServiceMonitorList', plural: 'servicemonitors', singular: 'servicemonitor' },
    scope: 'Namespaced',
    // A minimal stand-in for the Prometheus Operator's CRD: it lets the API server accept
    // ServiceMonitor objects without checking their fields.
    versions: [{ name: 'v1', served: true, storage: true, schema: { openAPIV3Schema: { type: 'object', 'x-kubernetes-preserve-unknown-fields': true } } }],
  },
};

let cluster: Cluster;
let helm: Helm;
let k: Kubectl;

beforeAll(async () => {
  helm = await Helm.create();
  cluster = await startCluster();
  k = await Kubectl.create({ server: cluster.url, caPem: cluster.caPem, token: cluster.adminToken });
  assertSucceeded(await k.run(['create', 'namespace', NAMESPACE]));
  assertSucceeded(await k.run(['create', 'namespace', FLUX_NAMESPACE]));
  assertSucceeded(await k.run(['apply', '-f', '-'], { input: JSON.stringify(SERVICE_MONITOR_CRD) }));
  assertSucceeded(await k.run(['wait', '--for=condition=Established', '--timeout=30s', `crd/${SERVICE_MONITOR_CRD.metadata.name}`]));
}, 120_000);

afterEach(() => k?.killAll());

afterAll(async () => {
  await k?.cleanup();
  await cluster?.stop();
  await helm?.cleanup();
});

async function dryRun(rendered: string): Promise<void> {
  const r = await k.run(['apply', '--dry-run=server', '-f', '-'], { input: rendered });
  assertSucceeded(r);
  const objects = parseManifests(rendered);
  for (const o of objects) {
    if (!r.stdout.includes(`${o.metadata.name} created (server dry run)`)) throw new Error(`the server dry run did not report ${o.kind}/${o.metadata.name}: ${explain(r)}`);
  }
}

describe.each([
  { chart: 'agentk' as const, cases: agentkCases },
  { chart: 'kas' as const, cases: kasCases },
])('helm/$chart', ({ chart, cases }) => {
  test('helm lint --strict with the chart defaults', async () => {
    const r = await helm.lint(CHARTS[chart]);
    if (r.code !== 0) throw new Error(explainHelm(r));
  });

  describe.each(cases)('$name', ({ values, check }) => {
    test('helm lint --strict', async () => {
      const r = await helm.lint(CHARTS[chart], values);
      if (r.code !== 0) throw new Error(explainHelm(r));
    });

    test('helm template renders what the values ask for', async () => {
      const objects = parseManifests(await helm.template(CHARTS[chart], { namespace: NAMESPACE, values }));
      (check as (o: K8sObject[], v: Values) => void)(objects, values);
    });

    test('kubectl apply --dry-run=server accepts the rendering', async () => {
      await dryRun(await helm.template(CHARTS[chart], { namespace: NAMESPACE, values }));
    });
  });
});

describe('helm refuses values that cannot work', () => {
  test.each<{ chart: 'agentk' | 'kas'; values: Values; message: RegExp }>([
    { chart: 'agentk', values: { config: { token: AGENT_TOKEN } }, message: /config\.kasAddress is required/ },
    { chart: 'agentk', values: { config: { kasAddress: 'https://kas.example.com/', token: AGENT_TOKEN } }, message: /ws:\/\/ or wss:\/\/ URL/ },
    { chart: 'agentk', values: { config: { kasAddress: KAS_ADDRESS } }, message: /set config\.token .* or config\.secretName/ },
    { chart: 'agentk', values: { ...agentkBase, config: { ...agentkBase.config, kasConnections: 0 } }, message: /kasConnections must be from 1 to 64/ },
    { chart: 'kas', values: { config: { drainGraceSeconds: 60 } }, message: /terminationGracePeriodSeconds \(45\) must be above config\.drainGraceSeconds \(60\)/ },
    { chart: 'kas', values: { config: { shutdownDelaySeconds: 15 } }, message: /terminationGracePeriodSeconds \(45\) must be above config\.drainGraceSeconds \(30\) plus config\.shutdownDelaySeconds \(15\)/ },
    { chart: 'kas', values: { standalone: { agents: [{ id: 1, name: 'Not_A_Label', token: 't' }] } }, message: /not a DNS label/ },
    { chart: 'kas', values: { standalone: { ...kasStandalone, proxyTokens: [{ name: 'x', token: 't', agents: [9] }] } }, message: /agent 9 is not in standalone\.agents/ },
    { chart: 'kas', values: { standalone: kasStandalone, replicas: 3 }, message: /several kas replicas need redis\.address/ },
    { chart: 'kas', values: { standalone: kasStandalone, redis: { address: 'redis:6379' } }, message: /privateApi\.secret is required with redis/ },
  ])('$chart: $message', async ({ chart, values, message }) => {
    await expect(helm.template(CHARTS[chart], { values })).rejects.toThrow(message);
  });
});

describe('helm install into the real API server', () => {
  test.each<{ chart: 'agentk' | 'kas'; values: Values; notes: RegExp }>([
    { chart: 'agentk', values: { ...agentkBase, rbac: { impersonate: { enabled: true } } }, notes: /connected to kas/ },
    { chart: 'kas', values: { standalone: kasStandalone, replicas: 2, redis: { address: 'redis:6379' }, privateApi: { secret: PRIVATE_API_SECRET } }, notes: /agent connected/ },
  ])('helm install $chart: the release is deployed and NOTES.txt says how to see agents connect', async ({ chart, values, notes }) => {
    const kubeconfig = path.join(k.dir, 'kubeconfig');
    const namespace = `install-${chart}`;
    const install = await helm.run(['install', chart, CHARTS[chart], '--namespace', namespace, '--create-namespace', '--kubeconfig', kubeconfig, '--values', await helm.valuesFile(values)]);
    if (install.code !== 0) throw new Error(explainHelm(install));
    expect(install.stdout).toMatch(/STATUS: deployed/);
    expect(install.stdout).toMatch(notes);
    // Helm asked the API server (v1.20) which PodDisruptionBudget API it serves.
    assertStdout(await k.run(['get', 'deployment,poddisruptionbudget.v1beta1.policy', '-n', namespace, '-o', 'name']), `deployment.apps/${chart}`);
    const uninstall = await helm.run(['uninstall', chart, '--namespace', namespace, '--kubeconfig', kubeconfig]);
    if (uninstall.code !== 0) throw new Error(explainHelm(uninstall));
  });
});
