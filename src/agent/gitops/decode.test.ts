import { decodeFile } from './decode.js';
import { parseRefKey, refKey } from './inventory.js';

describe('decoding manifest files', () => {
  test('YAML with several documents, empty documents skipped, namespaces kept or left to the applier', () => {
    const { objects, errors } = decodeFile('a.yaml', Buffer.from('apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n  namespace: x\n---\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n'));
    expect(errors).toEqual([]);
    expect(objects.map((o) => [o.group, o.version, o.kind, o.namespace, o.name, o.source])).toEqual([
      ['', 'v1', 'ConfigMap', 'x', 'a', 'a.yaml#0'],
      ['apps', 'v1', 'Deployment', undefined, 'web', 'a.yaml#2'],
    ]);
  });

  test('JSON, and kind: List expanded', () => {
    const list = { apiVersion: 'v1', kind: 'List', items: [{ apiVersion: 'v1', kind: 'Secret', metadata: { name: 's' } }, { kind: 'Broken' }] };
    const { objects, errors } = decodeFile('list.json', Buffer.from(JSON.stringify(list)));
    expect(objects.map((o) => o.name)).toEqual(['s']);
    expect(errors).toEqual([{ path: 'list.json[1]', message: expect.stringMatching(/apiVersion/) }]);
  });

  test.each([
    ['bad.yaml', 'kind: [unclosed\n', /not valid YAML/],
    ['bad.json', '{"kind": ', /not valid JSON/],
    ['scalar.yaml', 'just text\n', /mapping/],
    ['noname.yaml', 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  generateName: x-\n', /metadata\.name is required/],
    ['badname.yaml', 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: "Not Valid!"\n', /not a valid object name/],
    ['badns.yaml', 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n  namespace: UPPER\n', /namespace/],
    ['dupkeys.yaml', 'apiVersion: v1\nkind: ConfigMap\nkind: Secret\nmetadata:\n  name: a\n', /not valid YAML/],
  ])('%s is reported with its path', (path, text, message) => {
    const { objects, errors } = decodeFile(path, Buffer.from(text));
    expect(objects).toEqual([]);
    expect(errors).toEqual([{ path, message: expect.stringMatching(message) }]);
  });

  test('a broken document does not hide the others of its file', () => {
    const { objects, errors } = decodeFile('m.yaml', Buffer.from('apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ok}\n---\nkind: ConfigMap\n'));
    expect(objects.map((o) => o.name)).toEqual(['ok']);
    expect(errors.map((e) => e.path)).toEqual(['m.yaml#1']);
  });
});

describe('inventory keys', () => {
  test.each([
    { group: '', kind: 'ConfigMap', namespace: 'default', name: 'a.b-c' },
    { group: 'rbac.authorization.k8s.io', kind: 'ClusterRole', namespace: '', name: 'system:my-role' },
    { group: 'example.com', kind: 'Widget', namespace: 'ns', name: 'w' },
  ])('%o round-trips', (ref) => {
    const key = refKey(ref);
    expect(key).toMatch(/^[-._a-zA-Z0-9]+$/); // a valid ConfigMap data key
    expect(parseRefKey(key)).toEqual(ref);
  });

  test('foreign keys are ignored', () => {
    expect(parseRefKey('README')).toBeNull();
    expect(parseRefKey('a_b')).toBeNull();
  });
});
