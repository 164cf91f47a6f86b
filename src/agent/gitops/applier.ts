/**
 * Applies one manifest snapshot to the cluster: decode, order, server-side apply, inventory, prune.
 *
 * 1. Every file is decoded (decode.ts); a file that does not parse is reported and the rest goes on.
 * 2. Namespaces and CustomResourceDefinitions are applied first; the definitions of the snapshot
 *    are waited for until `Established`, discovery is read again, then everything else is applied
 *    (custom resources after their definitions), a few at a time.
 * 3. Each object: read it (for the inventory policy and to tell "unchanged"), then
 *    `PATCH ...?fieldManager=agentk&force=true` with `application/apply-patch+yaml` carrying the
 *    annotation `config.k8s.io/owning-inventory`. The resourceVersion before and after tells
 *    created / configured / unchanged.
 * 4. The inventory (inventory.ts) is written with the old and the new objects before anything is
 *    applied (so a crash never loses track of an object), and with the final list at the end.
 * 5. Prune: objects of the previous inventory that left the manifests are deleted with the
 *    project's propagation policy, only when `prune` is on and nothing went wrong: not when the
 *    snapshot is incomplete, a file failed to parse or any object failed. Then the old entries stay
 *    in the inventory and are pruned by a later, clean apply. An object now owned by another
 *    inventory is never deleted.
 *
 * Dry runs: `client` decodes and checks only (no request); `server` sends every write with
 * `dryRun=All` (the API server validates, admission runs, nothing is stored).
 */
import { setMaxListeners } from 'node:events';
import type { Logger } from '../../shared/logger.js';
import { kubeErrorMessage, type KubeJson } from '../kubernetes-api/kube-json.js';
import { decodeFile, MAX_OBJECTS, type ManifestObject } from './decode.js';
import { Discovery, objectPath, type ResourceInfo } from './discovery.js';
import { describeRef, InventoryStore, OWNING_INVENTORY_ANNOTATION, refKey, type ObjectRef } from './inventory.js';
import type { ManifestSnapshot } from './snapshot.js';

/** What happened to one object. */
export type ObjectAction = 'created' | 'configured' | 'unchanged' | 'validated' | 'failed' | 'pruned' | 'prune_failed' | 'prune_skipped';

export interface ObjectStatus extends ObjectRef {
  action: ObjectAction;
  /** The file (and document) it came from; absent for pruned objects. */
  source?: string;
  /** True when agentk took the object over from no or another inventory (inventory_policy). */
  adopted?: boolean;
  /** Why it failed or was skipped. */
  reason?: string;
}

export interface ApplyError {
  /** The file, when the error is about one. */
  path?: string;
  /** The object, when the error is about one ("ConfigMap default/x"). */
  object?: string;
  code: string;
  message: string;
}

export interface ApplyResult {
  projectId: string;
  commit: string;
  dryRun: 'none' | 'client' | 'server';
  startedAt: string;
  durationMs: number;
  /** Created or configured. */
  applied: number;
  unchanged: number;
  pruned: number;
  /** Objects that failed (refusals by the inventory policy included), plus files that did not parse. */
  failed: number;
  /** Why nothing was pruned, when prune is on but did not run. */
  pruneSkipped?: string;
  objects: ObjectStatus[];
  errors: ApplyError[];
}

export interface ApplierOptions {
  kube: KubeJson;
  /** The agent's id (inventory names). */
  agentId: string;
  logger: Logger;
  /** Objects applied at the same time (default 16). */
  concurrency?: number;
  /** How long CRDs may take to become established, ms (default 60 s, bounded by the reconcile timeout). */
  crdEstablishTimeoutMs?: number;
}

const CRD_GROUP = 'apiextensions.k8s.io';
const POLICY_NAME: Record<ManifestSnapshot['settings']['prunePropagationPolicy'], string> = { orphan: 'Orphan', background: 'Background', foreground: 'Foreground' };

/** Objects of one kind and namespace from which their metadata is listed rather than read one by one. */
const PREFETCH_MIN_OBJECTS = 8;
const METADATA_LIST_ACCEPT = 'application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1, application/json';

interface ExistingMeta {
  metadata?: { name?: string; resourceVersion?: string; annotations?: Record<string, string> };
}

interface Planned {
  m: ManifestObject;
  ref: ObjectRef;
  info: ResourceInfo | null;
}

function isCrd(m: { group: string; kind: string }): boolean {
  return m.group === CRD_GROUP && m.kind === 'CustomResourceDefinition';
}

function isNamespace(m: { group: string; kind: string }): boolean {
  return m.group === '' && m.kind === 'Namespace';
}

async function eachLimited<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const item = items[next++]!;
      await fn(item);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

function annotations(obj: unknown): Record<string, unknown> {
  const a = (obj as { metadata?: { annotations?: unknown } } | null)?.metadata?.annotations;
  return typeof a === 'object' && a !== null ? (a as Record<string, unknown>) : {};
}

export class Applier {
  private readonly o: ApplierOptions;

  constructor(options: ApplierOptions) {
    this.o = options;
  }

  async apply(snapshot: ManifestSnapshot, outerSignal?: AbortSignal): Promise<ApplyResult> {
    const started = performance.now();
    const settings = snapshot.settings;
    const timeout = AbortSignal.timeout(Math.max(1000, settings.reconcileTimeoutMs));
    const signal = outerSignal ? AbortSignal.any([outerSignal, timeout]) : timeout;
    // Every request in flight listens on it (concurrency of them, and a few more).
    setMaxListeners(0, signal);
    const result: ApplyResult = {
      projectId: snapshot.projectId,
      commit: snapshot.commit,
      dryRun: settings.dryRunStrategy,
      startedAt: new Date().toISOString(),
      durationMs: 0,
      applied: 0,
      unchanged: 0,
      pruned: 0,
      failed: 0,
      objects: [],
      errors: [],
    };
    const finish = () => {
      result.durationMs = Math.round(performance.now() - started);
      for (const s of result.objects) {
        if (s.action === 'created' || s.action === 'configured') result.applied++;
        else if (s.action === 'unchanged') result.unchanged++;
        else if (s.action === 'pruned') result.pruned++;
        else if (s.action === 'failed') result.failed++;
      }
      result.failed += result.errors.filter((e) => e.path !== undefined && e.object === undefined).length;
      return result;
    };

    for (const e of snapshot.errors) result.errors.push({ path: e.path, code: e.code, message: e.message });
    if (!snapshot.complete && snapshot.files.length === 0) {
      // kas could read nothing (a refused project, a missing ref): report it, touch nothing.
      if (settings.prune) result.pruneSkipped = 'the commit could not be read; nothing was applied or pruned';
      return finish();
    }

    // 1. Decode.
    const decoded: ManifestObject[] = [];
    for (const file of snapshot.files) {
      const { objects, errors } = decodeFile(file.path, file.data);
      for (const e of errors) result.errors.push({ path: e.path, code: 'GITOPS_INVALID_MANIFEST', message: e.message });
      decoded.push(...objects);
    }
    if (decoded.length > MAX_OBJECTS) {
      result.errors.push({ code: 'GITOPS_TOO_MANY_OBJECTS', message: `the manifests hold ${decoded.length} objects; at most ${MAX_OBJECTS} are applied` });
      decoded.length = MAX_OBJECTS;
    }
    const decodeFailed = result.errors.length > 0;

    if (settings.dryRunStrategy === 'client') {
      for (const m of decoded) result.objects.push({ group: m.group, kind: m.kind, namespace: m.namespace ?? '', name: m.name, source: m.source, action: 'validated' });
      if (settings.prune) result.pruneSkipped = 'dry run (client): nothing is applied or pruned';
      return finish();
    }

    const kube = this.o.kube;
    const dryRun = settings.dryRunStrategy === 'server';
    const discovery = new Discovery(kube, signal);
    const inventory = new InventoryStore(kube, this.o.agentId, snapshot.projectId);
    const inventoryNamespace = settings.defaultNamespace;

    // 2. Plan: resolve kinds served now; the rest is resolved after CRDs are established.
    const planned: Planned[] = [];
    const seen = new Set<string>();
    const resolve = async (m: ManifestObject): Promise<Planned | null> => {
      let info: ResourceInfo | null;
      try {
        info = await discovery.find(m.group, m.version, m.kind);
      } catch (err) {
        this.fail(result, m, m.namespace ?? '', `discovery: ${(err as Error).message}`);
        return null;
      }
      const namespace = info ? (info.namespaced ? m.namespace ?? settings.defaultNamespace : '') : m.namespace ?? '';
      return { m, ref: { group: m.group, kind: m.kind, namespace, name: m.name }, info };
    };

    const first = decoded.filter((m) => isNamespace(m) || isCrd(m));
    const rest = decoded.filter((m) => !isNamespace(m) && !isCrd(m));

    // The old inventory, and the new one written before applying (old ∪ new: nothing is lost if agentk dies now).
    let previous: ObjectRef[] = [];
    try {
      previous = await inventory.read(inventoryNamespace, signal);
    } catch (err) {
      result.errors.push({ code: 'GITOPS_INVENTORY_FAILED', message: (err as Error).message });
      result.pruneSkipped = 'the inventory could not be read';
      this.o.logger.warn({ err, projectId: snapshot.projectId }, 'gitops: cannot read the inventory; applying without prune');
    }
    const inventoryReadable = result.pruneSkipped === undefined;

    const applyAll = async (items: ManifestObject[]): Promise<Planned[]> => {
      const plans: Planned[] = [];
      for (const m of items) {
        const p = await resolve(m);
        if (!p) continue;
        const key = refKey(p.ref);
        if (seen.has(key)) {
          this.fail(result, m, p.ref.namespace, `${describeRef(p.ref)} is defined more than once (also in an earlier file)`, 'GITOPS_DUPLICATE_OBJECT');
          continue;
        }
        seen.add(key);
        plans.push(p);
      }
      planned.push(...plans);
      if (!dryRun && inventoryReadable) {
        const union = new Map<string, ObjectRef>();
        for (const r of previous) union.set(refKey(r), r);
        for (const p of planned) union.set(refKey(p.ref), p.ref);
        try {
          await inventory.write(inventoryNamespace, union.values(), { signal });
        } catch (err) {
          result.errors.push({ code: 'GITOPS_INVENTORY_FAILED', message: (err as Error).message });
        }
      }
      const known = await this.prefetch(plans, signal);
      await eachLimited(plans, this.o.concurrency ?? 16, (p) => this.applyOne(p, inventory.id, settings, dryRun, signal, result, known));
      return plans;
    };

    const firstPlans = await applyAll(first);
    const crds = firstPlans.filter((p) => isCrd(p.m) && result.objects.some((s) => s.kind === p.ref.kind && s.name === p.ref.name && s.action !== 'failed'));
    if (crds.length > 0 && !dryRun) {
      await this.waitEstablished(
        crds.map((p) => p.ref.name),
        Math.min(this.o.crdEstablishTimeoutMs ?? 60_000, settings.reconcileTimeoutMs),
        signal,
        result,
      );
    }
    if (crds.length > 0) discovery.invalidate();
    await applyAll(rest);

    // 5. Prune.
    const failedAny = result.objects.some((s) => s.action === 'failed') || decodeFailed || result.errors.some((e) => e.code === 'GITOPS_INVENTORY_FAILED');
    const desired = new Set(planned.map((p) => refKey(p.ref)));
    const applied = planned.filter((p) => result.objects.some((s) => s.action !== 'failed' && refKey(s) === refKey(p.ref))).map((p) => p.ref);
    const leftOver = previous.filter((r) => !desired.has(refKey(r)));
    const keep = new Map<string, ObjectRef>();
    for (const r of applied) keep.set(refKey(r), r);
    let pruneRan = false;
    if (!settings.prune) {
      for (const r of leftOver) keep.set(refKey(r), r);
    } else if (!inventoryReadable) {
      // pruneSkipped already says why
    } else if (!snapshot.complete || failedAny) {
      const why = !snapshot.complete ? 'the commit could not be read completely' : decodeFailed ? 'a manifest could not be decoded' : 'an object could not be applied';
      result.pruneSkipped = `${why}; objects that left the manifests are kept and pruned by the next clean apply`;
      for (const r of previous) keep.set(refKey(r), r);
      // Objects that failed now keep their inventory entry when they had one.
    } else if (leftOver.length > 0) {
      pruneRan = true;
      const pruneSignal = AbortSignal.any([signal, AbortSignal.timeout(Math.max(1000, settings.pruneTimeoutMs))]);
      setMaxListeners(0, pruneSignal);
      const remaining = await this.prune(leftOver, inventory.id, settings, dryRun, pruneSignal, result);
      for (const r of remaining) keep.set(refKey(r), r);
    }
    if (!dryRun && inventoryReadable) {
      try {
        await inventory.write(inventoryNamespace, keep.values(), { signal });
      } catch (err) {
        result.errors.push({ code: 'GITOPS_INVENTORY_FAILED', message: (err as Error).message });
      }
    }
    this.o.logger.debug({ projectId: snapshot.projectId, pruneRan }, 'gitops: apply done');
    return finish();
  }

  private fail(result: ApplyResult, m: ManifestObject, namespace: string, reason: string, code = 'GITOPS_APPLY_FAILED'): void {
    const ref = { group: m.group, kind: m.kind, namespace, name: m.name };
    result.objects.push({ ...ref, source: m.source, action: 'failed', reason });
    result.errors.push({ path: m.source, object: describeRef(ref), code, message: reason });
  }

  /**
   * The metadata of the existing objects of the kinds and namespaces that many objects go to, with
   * one paginated list each (metadata only: PartialObjectMetadataList) instead of a read per object.
   * Keyed by object path; a path absent from a listed collection does not exist.
   */
  private async prefetch(plans: Planned[], signal: AbortSignal): Promise<Map<string, ExistingMeta | null>> {
    const known = new Map<string, ExistingMeta | null>();
    const groups = new Map<string, Planned[]>();
    for (const p of plans) {
      if (!p.info) continue;
      const collection = objectPath(p.m.group, p.m.version, p.info, p.ref.namespace, '').replace(/\/$/, '');
      const list = groups.get(collection) ?? [];
      list.push(p);
      groups.set(collection, list);
    }
    for (const [collection, members] of groups) {
      if (members.length < PREFETCH_MIN_OBJECTS) continue;
      const found = new Map<string, ExistingMeta>();
      let cont = '';
      let ok = true;
      do {
        const res = await this.o.kube
          .request('GET', `${collection}?limit=500${cont ? `&continue=${encodeURIComponent(cont)}` : ''}`, undefined, { signal, accept: METADATA_LIST_ACCEPT })
          .catch(() => null);
        const list = res?.json as { kind?: string; metadata?: { continue?: string }; items?: ExistingMeta[] } | null;
        if (!res || res.status !== 200 || !Array.isArray(list?.items)) {
          ok = false; // fall back to one read per object
          break;
        }
        for (const item of list.items) {
          const name = item?.metadata?.name;
          if (typeof name === 'string') found.set(name, item);
        }
        cont = list.metadata?.continue ?? '';
      } while (cont !== '');
      if (!ok) continue;
      for (const p of members) known.set(objectPath(p.m.group, p.m.version, p.info!, p.ref.namespace, p.ref.name), found.get(p.ref.name) ?? null);
    }
    return known;
  }

  private async applyOne(p: Planned, inventoryId: string, settings: ManifestSnapshot['settings'], dryRun: boolean, signal: AbortSignal, result: ApplyResult, known: Map<string, ExistingMeta | null>): Promise<void> {
    const { m, ref } = p;
    const info = p.info;
    if (!info) {
      this.fail(result, m, ref.namespace, `the API server serves no kind ${m.kind} in ${m.object.apiVersion}${m.group !== '' ? ' (is its CustomResourceDefinition applied and established?)' : ''}`, 'GITOPS_UNKNOWN_KIND');
      return;
    }
    const path = objectPath(m.group, m.version, info, ref.namespace, ref.name);
    try {
      let existing: unknown;
      if (known.has(path)) {
        existing = known.get(path);
      } else {
        const got = await this.o.kube.request('GET', path, undefined, { signal });
        if (got.status !== 200 && got.status !== 404) {
          this.fail(result, m, ref.namespace, `cannot read it: ${kubeErrorMessage(got)}`);
          return;
        }
        existing = got.status === 200 ? got.json : null;
      }
      let adopted = false;
      if (existing) {
        const owner = annotations(existing)[OWNING_INVENTORY_ANNOTATION];
        if (owner !== inventoryId) {
          const policy = settings.inventoryPolicy;
          const unowned = typeof owner !== 'string' || owner === '';
          if (policy === 'adopt_all' || (policy === 'adopt_if_no_inventory' && unowned)) {
            adopted = true;
          } else {
            const reason = unowned
              ? `it exists and belongs to no inventory; inventory_policy ${policy} refuses to take it over (adopt_if_no_inventory or adopt_all would)`
              : `it belongs to another inventory (${String(owner)}); inventory_policy ${policy} refuses to take it over (adopt_all would)`;
            this.fail(result, m, ref.namespace, reason, 'GITOPS_INVENTORY_CONFLICT');
            return;
          }
        }
      }
      const body = structuredClone(m.object);
      const metadata = body.metadata;
      delete metadata.resourceVersion;
      delete metadata.uid;
      delete metadata.creationTimestamp;
      delete metadata.managedFields;
      if (info.namespaced) metadata.namespace = ref.namespace;
      else delete metadata.namespace;
      const ann = typeof metadata.annotations === 'object' && metadata.annotations !== null ? (metadata.annotations as Record<string, unknown>) : {};
      metadata.annotations = { ...ann, [OWNING_INVENTORY_ANNOTATION]: inventoryId };
      const query = `?fieldManager=agentk&force=true${dryRun ? '&dryRun=All' : ''}`;
      const res = await this.o.kube.request('PATCH', `${path}${query}`, body, { contentType: 'application/apply-patch+yaml', signal });
      if (res.status !== 200 && res.status !== 201) {
        this.fail(result, m, ref.namespace, kubeErrorMessage(res));
        return;
      }
      const before = (existing as { metadata?: { resourceVersion?: string } } | null)?.metadata?.resourceVersion;
      const after = (res.json as { metadata?: { resourceVersion?: string } } | null)?.metadata?.resourceVersion;
      const action: ObjectAction = !existing ? 'created' : before !== undefined && before === after ? 'unchanged' : 'configured';
      result.objects.push({ ...ref, source: m.source, action, ...(adopted && { adopted: true }) });
    } catch (err) {
      this.fail(result, m, ref.namespace, signal.aborted ? `not applied within the reconcile timeout (${settings.reconcileTimeoutMs} ms)` : (err as Error).message);
    }
  }

  private async waitEstablished(names: string[], timeoutMs: number, signal: AbortSignal, result: ApplyResult): Promise<void> {
    const deadline = performance.now() + timeoutMs;
    const pending = new Set(names);
    while (pending.size > 0 && performance.now() < deadline && !signal.aborted) {
      for (const name of [...pending]) {
        try {
          const res = await this.o.kube.request('GET', `/apis/${CRD_GROUP}/v1/customresourcedefinitions/${encodeURIComponent(name)}`, undefined, { signal });
          const conditions = (res.json as { status?: { conditions?: Array<{ type?: string; status?: string }> } } | null)?.status?.conditions ?? [];
          if (conditions.some((c) => c.type === 'Established' && c.status === 'True')) pending.delete(name);
        } catch {
          // tried again below
        }
      }
      if (pending.size > 0) await new Promise((r) => setTimeout(r, 200));
    }
    for (const name of pending) {
      result.errors.push({ object: `CustomResourceDefinition ${name}`, code: 'GITOPS_CRD_NOT_ESTABLISHED', message: `not established within ${timeoutMs} ms; its custom resources may fail` });
    }
  }

  /** Deletes what left the manifests; returns the refs that must stay in the inventory (deletes that failed). */
  private async prune(refs: ObjectRef[], inventoryId: string, settings: ManifestSnapshot['settings'], dryRun: boolean, signal: AbortSignal, result: ApplyResult): Promise<ObjectRef[]> {
    const discovery = new Discovery(this.o.kube, signal);
    const remaining: ObjectRef[] = [];
    // Custom resources and namespaced objects first, definitions and namespaces last.
    const rank = (r: ObjectRef) => (isNamespace(r) ? 2 : isCrd(r) ? 1 : 0);
    const ordered = [...refs].sort((a, b) => rank(a) - rank(b));
    for (const tier of [0, 1, 2]) {
      await eachLimited(
        ordered.filter((r) => rank(r) === tier),
        this.o.concurrency ?? 16,
        async (ref) => {
          try {
            const info = await this.findAnyVersion(discovery, ref);
            if (!info) {
              // Its kind is no longer served (its CRD went): nothing left to delete.
              result.objects.push({ ...ref, action: 'pruned', reason: 'its kind is no longer served' });
              return;
            }
            const path = objectPath(ref.group, info.version, info.info, ref.namespace, ref.name);
            const got = await this.o.kube.request('GET', path, undefined, { signal });
            if (got.status === 404) {
              result.objects.push({ ...ref, action: 'pruned', reason: 'already gone' });
              return;
            }
            if (got.status !== 200) throw new Error(`cannot read it: ${kubeErrorMessage(got)}`);
            const owner = annotations(got.json)[OWNING_INVENTORY_ANNOTATION];
            if (owner !== inventoryId) {
              result.objects.push({ ...ref, action: 'prune_skipped', reason: `owned by ${typeof owner === 'string' && owner !== '' ? `inventory ${owner}` : 'no inventory'} now; not deleted` });
              return;
            }
            const query = dryRun ? '?dryRun=All' : '';
            const body = { apiVersion: 'v1', kind: 'DeleteOptions', propagationPolicy: POLICY_NAME[settings.prunePropagationPolicy] };
            const res = await this.o.kube.request('DELETE', `${path}${query}`, body, { signal });
            if (res.status === 200 || res.status === 202 || res.status === 404) {
              result.objects.push({ ...ref, action: 'pruned' });
            } else {
              throw new Error(kubeErrorMessage(res));
            }
          } catch (err) {
            const reason = signal.aborted ? `not pruned within the prune timeout (${settings.pruneTimeoutMs} ms)` : (err as Error).message;
            result.objects.push({ ...ref, action: 'prune_failed', reason });
            result.errors.push({ object: describeRef(ref), code: 'GITOPS_PRUNE_FAILED', message: reason });
            remaining.push(ref);
          }
        },
      );
    }
    return remaining;
  }

  /** The inventory keeps group and kind only: find a served version of the kind. */
  private async findAnyVersion(discovery: Discovery, ref: ObjectRef): Promise<{ version: string; info: ResourceInfo } | null> {
    if (ref.group === '') {
      const info = await discovery.find('', 'v1', ref.kind);
      return info ? { version: 'v1', info } : null;
    }
    const res = await this.o.kube.request('GET', `/apis/${ref.group}`);
    if (res.status === 404) return null;
    if (res.status !== 200) throw new Error(`discovery of ${ref.group} failed: ${kubeErrorMessage(res)}`);
    const group = res.json as { preferredVersion?: { version?: string }; versions?: Array<{ version?: string }> } | null;
    const versions = [group?.preferredVersion?.version, ...(group?.versions ?? []).map((v) => v.version)].filter((v): v is string => typeof v === 'string');
    for (const version of new Set(versions)) {
      const info = await discovery.find(ref.group, version, ref.kind);
      if (info) return { version, info };
    }
    return null;
  }
}
