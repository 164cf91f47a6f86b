import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { NODE_FLAGS } from './node-flags.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const read = (file: string) => readFileSync(`${root}${file}`, 'utf8');

test('npm start runs kas with the programs\' Node options', () => {
  const pkg = JSON.parse(read('package.json')) as { scripts: Record<string, string> };
  expect(pkg.scripts.start).toContain(`node ${NODE_FLAGS.join(' ')} dist/src/broker/main.js`);
});

test('this Node accepts the options, and the young generation then keeps its size', () => {
  const out = execFileSync(process.execPath, [...NODE_FLAGS, '-e', "process.stdout.write(String(require('v8').getHeapSpaceStatistics().find((s) => s.space_name === 'new_space').space_size))"], { encoding: 'utf8' });
  expect(Number(out)).toBeGreaterThanOrEqual(16 * 1024 * 1024);
});
