// The VM runs' file lists (test/vm-files.ts): the GPU end-to-end files run on one kernel, every
// other file on all, and the list names files that exist.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { PROJECT_ROOT } from '../../vm/paths.js';
import { GPU_E2E_FILES, vmFiles } from '../vm-files.js';

const GLOB = 'test/vm/**/*.test.ts';

test('the GPU end-to-end files exist (a renamed file would otherwise run on every kernel)', (t) => {
  for (const file of GPU_E2E_FILES) t.true(existsSync(join(PROJECT_ROOT, file)), file);
});

test('the e2e kernel runs the whole glob; another kernel every VM file but the GPU end-to-end ones', (t) => {
  t.deepEqual(vmFiles('6.12', GLOB, false, '6.12'), [GLOB]);
  const on61 = vmFiles('6.1', GLOB, false, '6.12');
  const all = readdirSync(join(PROJECT_ROOT, 'test', 'vm')).filter((f) => f.endsWith('.test.ts')).map((f) => `test/vm/${f}`);
  t.deepEqual([...on61, ...GPU_E2E_FILES].sort(), all.sort());
  for (const file of GPU_E2E_FILES) t.false(on61.includes(file));
  // QEMU's own blob path uses whichever /dev/udmabuf the kernel has: ours on 6.1, the in-tree one on 6.12.
  t.true(on61.includes('test/vm/qemu-blob-udmabuf.test.ts'), 'the nested blob test runs on 6.1 too');
});

test('a pattern given in the environment is taken as it is on every kernel', (t) => {
  t.deepEqual(vmFiles('6.1', 'test/vm/api.test.ts', true, '6.12'), ['test/vm/api.test.ts']);
});

test('gpu-guest-cli (builds the nested GPU guests on the host): --help exits 0, an unknown option exits 64', (t) => {
  const cli = join(PROJECT_ROOT, 'dist', 'vm', 'gpu-guest-cli.js');
  const help = spawnSync(process.execPath, [cli, '--help'], { encoding: 'utf8' });
  t.is(help.status, 0);
  t.regex(help.stdout, /Usage: node dist\/vm\/gpu-guest-cli\.js \[KERNEL\.\.\.\]/);
  const bad = spawnSync(process.execPath, [cli, '--frobnicate'], { encoding: 'utf8' });
  t.is(bad.status, 64);
  t.regex(bad.stderr, /unknown option --frobnicate/);
});
