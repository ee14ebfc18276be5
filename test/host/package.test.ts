// What `npm publish` would ship: the library, the VM runner and what builds the addon and the
// module; never the compiled tests, benches or examples.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { PROJECT_ROOT } from '../../vm/paths.js';

test('the package publishes dist/lib and dist/vm, and no tests, benches or examples', (t) => {
  const npm = process.env.npm_execpath ? [process.execPath, process.env.npm_execpath] : ['npm'];
  const run = spawnSync(npm[0]!, [...npm.slice(1), 'pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: PROJECT_ROOT, encoding: 'utf8' });
  t.is(run.status, 0, run.stderr);
  const files = (JSON.parse(run.stdout) as { files: { path: string }[] }[])[0]!.files.map((f) => f.path);
  t.deepEqual(files.filter((f) => /^dist\/(test|bench|examples)\//.test(f) || /\.test\.(ts|js)$/.test(f)), []);
  for (const needed of ['dist/lib/index.js', 'dist/lib/index.d.ts', 'dist/vm/cli.js', 'dist/qemu-glue/index.js', 'dist/qemu-glue/vhost-user-gpu-cli.js', 'qemu-glue/vhost-user-gpu/50-guest-dmabuf-gpu.json', 'CMakeLists.txt', 'package.json']) t.true(files.includes(needed), needed);
  t.true(files.some((f) => f.startsWith('udmabuf/')) && files.some((f) => f.startsWith('addon/')), 'driver and addon sources');
});
