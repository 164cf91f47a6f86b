/**
 * Kubernetes protobuf request bodies for the fake API server (kubectl's typed clients, e.g. `kubectl
 * create configmap`, send `application/vnd.kubernetes.protobuf`): just enough to read a ConfigMap or
 * a Namespace.
 */
import { failure, HttpError } from './status.js';

type ProtoValue = number | Buffer;

function protoFields(buf: Buffer): Array<[number, ProtoValue]> {
  const fields: Array<[number, ProtoValue]> = [];
  let pos = 0;
  const varint = (): number => {
    let result = 0;
    let scale = 1;
    for (;;) {
      if (pos >= buf.length) throw new HttpError(failure(400, 'truncated protobuf body'));
      const byte = buf[pos++]!;
      result += (byte & 0x7f) * scale;
      scale *= 128;
      if ((byte & 0x80) === 0) return result;
    }
  };
  while (pos < buf.length) {
    const tag = varint();
    const field = Math.floor(tag / 8);
    switch (tag & 7) {
      case 0:
        fields.push([field, varint()]);
        break;
      case 1:
        pos += 8;
        break;
      case 2: {
        const length = varint();
        fields.push([field, buf.subarray(pos, pos + length)]);
        pos += length;
        break;
      }
      case 5:
        pos += 4;
        break;
      default:
        throw new HttpError(failure(400, 'unsupported protobuf wire type'));
    }
  }
  return fields;
}

const protoBytes = (fields: Array<[number, ProtoValue]>, field: number): Buffer[] =>
  fields.filter(([f, v]) => f === field && Buffer.isBuffer(v)).map(([, v]) => v as Buffer);
const protoString = (fields: Array<[number, ProtoValue]>, field: number): string | undefined => protoBytes(fields, field)[0]?.toString('utf8');

function protoMap(fields: Array<[number, ProtoValue]>, field: number, encoding: 'utf8' | 'base64' = 'utf8'): Record<string, string> | undefined {
  const entries = protoBytes(fields, field);
  if (entries.length === 0) return undefined;
  const map: Record<string, string> = {};
  for (const entry of entries) {
    const kv = protoFields(entry);
    map[protoString(kv, 1) ?? ''] = (protoBytes(kv, 2)[0] ?? Buffer.alloc(0)).toString(encoding);
  }
  return map;
}

function protoObjectMeta(buf: Buffer | undefined): Record<string, unknown> {
  const f = protoFields(buf ?? Buffer.alloc(0));
  const meta: Record<string, unknown> = {};
  const set = (name: string, value: unknown) => {
    if (value !== undefined && value !== '') meta[name] = value;
  };
  set('name', protoString(f, 1));
  set('generateName', protoString(f, 2));
  set('namespace', protoString(f, 3));
  set('labels', protoMap(f, 11));
  set('annotations', protoMap(f, 12));
  const finalizers = protoBytes(f, 14).map((b) => b.toString('utf8'));
  if (finalizers.length) meta.finalizers = finalizers;
  return meta;
}

/** Decodes the `k8s\0` + runtime.Unknown envelope and the few kinds the fake can create. */
export function decodeProtobufObject(body: Buffer): Record<string, unknown> {
  if (body.subarray(0, 4).toString('latin1') !== 'k8s\0') throw new HttpError(failure(400, 'protobuf body without the k8s envelope'));
  const unknown = protoFields(body.subarray(4));
  const typeMeta = protoFields(protoBytes(unknown, 1)[0] ?? Buffer.alloc(0));
  const apiVersion = protoString(typeMeta, 1) ?? '';
  const kind = protoString(typeMeta, 2) ?? '';
  const raw = protoFields(protoBytes(unknown, 2)[0] ?? Buffer.alloc(0));
  const metadata = protoObjectMeta(protoBytes(raw, 1)[0]);
  if (kind === 'ConfigMap') {
    const object: Record<string, unknown> = { apiVersion, kind, metadata };
    const data = protoMap(raw, 2);
    const binaryData = protoMap(raw, 3, 'base64');
    if (data) object.data = data;
    if (binaryData) object.binaryData = binaryData;
    const immutable = raw.find(([f]) => f === 4)?.[1];
    if (immutable !== undefined) object.immutable = immutable === 1;
    return object;
  }
  if (kind === 'Namespace') {
    const spec = protoFields(protoBytes(raw, 2)[0] ?? Buffer.alloc(0));
    return { apiVersion, kind, metadata, spec: { finalizers: protoBytes(spec, 1).map((b) => b.toString('utf8')) } };
  }
  throw new HttpError(failure(415, `the fake API server cannot decode a protobuf ${kind || 'object'}; send JSON`));
}
