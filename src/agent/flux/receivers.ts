/**
 * The Receiver and Secret agentk keeps for each followed GitRepository, in the GitRepository's
 * namespace: a Secret with a random `token` and a `generic-hmac` Receiver that references it and
 * lists the GitRepository, both owned by the GitRepository (an owner reference: the garbage
 * collector deletes them with it). An existing Secret's token is kept (a restart changes nothing);
 * an existing object of the same name that agentk did not make is left alone and reported.
 */
import { createHash } from 'node:crypto';
import type { Logger } from '../../shared/logger.js';
import { NOTIFICATION_GROUP, SOURCE_GROUP, type FluxApis, type KubeRequester } from './kube.js';
import { newReceiverToken } from './signature.js';

export const MANAGED_BY_LABEL = 'app.kubernetes.io/managed-by';
export const MANAGED_BY = 'gitlab-agent';
/** Marks the Receivers and Secrets of the Flux feature. */
export const FLUX_LABEL = 'agent.gitlab.com/flux-receiver';

export interface GitRepositoryRef {
  namespace: string;
  name: string;
  uid: string;
}

/** The name of the Receiver and of its Secret for a GitRepository (a DNS subdomain of at most 253 characters). */
export function receiverNameFor(gitRepositoryName: string): string {
  const name = `gitlab-agent-${gitRepositoryName}`;
  if (name.length <= 253) return name;
  const digest = createHash('sha256').update(gitRepositoryName).digest('hex').slice(0, 10);
  return `${name.slice(0, 253 - 11).replace(/[.-]+$/, '')}-${digest}`;
}

export class ReceiverConflictError extends Error {}

function path(group: string, version: string, namespace: string, plural: string, name?: string): string {
  const base = group === '' ? `/api/${version}` : `/apis/${group}/${version}`;
  return `${base}/namespaces/${encodeURIComponent(namespace)}/${plural}${name === undefined ? '' : `/${encodeURIComponent(name)}`}`;
}

function isOurs(obj: unknown): boolean {
  const labels = (obj as { metadata?: { labels?: Record<string, unknown> } } | null)?.metadata?.labels;
  return labels?.[FLUX_LABEL] === 'true';
}

export class ReceiverManager {
  constructor(
    private readonly kube: KubeRequester,
    private readonly apis: FluxApis,
    private readonly logger: Logger,
  ) {}

  private ownerReference(repo: GitRepositoryRef) {
    return { apiVersion: `${SOURCE_GROUP}/${this.apis.source}`, kind: 'GitRepository', name: repo.name, uid: repo.uid };
  }

  private metadata(name: string, repo: GitRepositoryRef) {
    return { name, namespace: repo.namespace, labels: { [MANAGED_BY_LABEL]: MANAGED_BY, [FLUX_LABEL]: 'true' }, ownerReferences: [this.ownerReference(repo)] };
  }

  /** Makes sure the Secret and the Receiver exist; returns the Receiver's name and the token. */
  async ensure(repo: GitRepositoryRef): Promise<{ receiver: string; token: string }> {
    const name = receiverNameFor(repo.name);
    const token = await this.ensureSecret(name, repo);
    await this.ensureReceiver(name, repo);
    return { receiver: name, token };
  }

  private async ensureSecret(name: string, repo: GitRepositoryRef): Promise<string> {
    const url = path('', 'v1', repo.namespace, 'secrets', name);
    const existing = await this.kube.request('GET', url);
    if (existing.status === 200) {
      if (!isOurs(existing.json)) throw new ReceiverConflictError(`Secret ${repo.namespace}/${name} exists and was not made by agentk`);
      const data = (existing.json as { data?: Record<string, unknown> }).data;
      const encoded = data?.token;
      if (typeof encoded === 'string' && encoded !== '') return Buffer.from(encoded, 'base64').toString('utf8');
      throw new ReceiverConflictError(`Secret ${repo.namespace}/${name} has no token`);
    }
    if (existing.status !== 404) throw new Error(`GET Secret ${repo.namespace}/${name} answered ${existing.status}: ${existing.text.slice(0, 200)}`);
    const token = newReceiverToken();
    const body = { apiVersion: 'v1', kind: 'Secret', metadata: this.metadata(name, repo), type: 'Opaque', data: { token: Buffer.from(token).toString('base64') } };
    const created = await this.kube.request('POST', path('', 'v1', repo.namespace, 'secrets'), body);
    if (created.status === 409) return this.ensureSecret(name, repo);
    if (created.status !== 201 && created.status !== 200) throw new Error(`creating Secret ${repo.namespace}/${name} answered ${created.status}: ${created.text.slice(0, 200)}`);
    this.logger.info({ namespace: repo.namespace, secret: name }, 'created the Secret of a Flux Receiver');
    return token;
  }

  private async ensureReceiver(name: string, repo: GitRepositoryRef): Promise<void> {
    const { notification, source } = this.apis;
    const url = path(NOTIFICATION_GROUP, notification, repo.namespace, 'receivers', name);
    const existing = await this.kube.request('GET', url);
    if (existing.status === 200) {
      if (!isOurs(existing.json)) throw new ReceiverConflictError(`Receiver ${repo.namespace}/${name} exists and was not made by agentk`);
      return;
    }
    if (existing.status !== 404) throw new Error(`GET Receiver ${repo.namespace}/${name} answered ${existing.status}: ${existing.text.slice(0, 200)}`);
    const body = {
      apiVersion: `${NOTIFICATION_GROUP}/${notification}`,
      kind: 'Receiver',
      metadata: this.metadata(name, repo),
      spec: {
        type: 'generic-hmac',
        secretRef: { name },
        resources: [{ apiVersion: `${SOURCE_GROUP}/${source}`, kind: 'GitRepository', name: repo.name }],
      },
    };
    const created = await this.kube.request('POST', path(NOTIFICATION_GROUP, notification, repo.namespace, 'receivers'), body);
    if (created.status === 409) return;
    if (created.status !== 201 && created.status !== 200) throw new Error(`creating Receiver ${repo.namespace}/${name} answered ${created.status}: ${created.text.slice(0, 200)}`);
    this.logger.info({ namespace: repo.namespace, receiver: name, gitRepository: repo.name }, 'created a Flux Receiver');
  }

  /** The Receiver's `status.webhookPath` (v1beta2's `status.url` as a fallback), or null when the notification-controller has not set it. */
  async webhookPath(namespace: string, receiver: string): Promise<string | null> {
    const res = await this.kube.request('GET', path(NOTIFICATION_GROUP, this.apis.notification, namespace, 'receivers', receiver));
    if (res.status === 404) return null;
    if (res.status !== 200) throw new Error(`GET Receiver ${namespace}/${receiver} answered ${res.status}: ${res.text.slice(0, 200)}`);
    const status = (res.json as { status?: { webhookPath?: unknown; url?: unknown } } | null)?.status;
    const value = typeof status?.webhookPath === 'string' && status.webhookPath !== '' ? status.webhookPath : typeof status?.url === 'string' && status.url !== '' ? status.url : null;
    if (value === null || !value.startsWith('/') || value.length > 2048) return null;
    return value;
  }
}
