// The README's API examples run as written, against the real driver, each as its own program.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import ts from 'typescript';
import { PROJECT_ROOT } from '../../vm/paths.js';
import { baselineGuard } from './helpers/baseline.js';
import { readmeApiBlocks } from '../readme-blocks.js';
import { Weston } from './helpers/weston.js';

const checkBaseline = baselineGuard(test);
const dir = mkdtempSync('/tmp/readme-');
test.after.always(() => rmSync(dir, { recursive: true, force: true }));

for (const [i, block] of readmeApiBlocks(join(PROJECT_ROOT, 'dist', 'lib', 'index.js')).entries()) {
  test.serial(`README, ${block.title}: the example runs`, async (t) => {
    const js = ts.transpileModule(block.source, { compilerOptions: { target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.ESNext } }).outputText;
    const file = join(dir, `block-${i}.mjs`);
    writeFileSync(file, js);
    // A block that talks to a compositor gets a real one: a headless weston of its own,
    // found the usual way ($WAYLAND_DISPLAY under $XDG_RUNTIME_DIR).
    const weston = /WaylandClient/.test(block.source) ? await Weston.start() : undefined;
    try {
      const env = weston ? { ...process.env, XDG_RUNTIME_DIR: weston.runtimeDir, WAYLAND_DISPLAY: weston.socket } : process.env;
      const run = spawnSync(process.execPath, [file], { encoding: 'utf8', timeout: 120_000, env });
      t.log(run.stdout.trim());
      t.is(run.status, 0, run.stderr);
      t.is(run.stderr, '', 'no warnings');
    } finally {
      await weston?.stop();
    }
  });
}

checkBaseline();
