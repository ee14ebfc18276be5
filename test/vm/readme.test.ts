// The README's API examples run as written, against the real driver, each as its own program.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import ts from 'typescript';
import { PROJECT_ROOT } from '../../vm/paths.js';
import { baselineGuard } from './helpers/baseline.js';
import { readmeApiBlocks } from '../readme-blocks.js';

const checkBaseline = baselineGuard(test);
const dir = mkdtempSync('/tmp/readme-');
test.after.always(() => rmSync(dir, { recursive: true, force: true }));

for (const [i, block] of readmeApiBlocks(join(PROJECT_ROOT, 'dist', 'lib', 'index.js')).entries()) {
  test.serial(`README, ${block.title}: the example runs`, (t) => {
    const js = ts.transpileModule(block.source, { compilerOptions: { target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.ESNext } }).outputText;
    const file = join(dir, `block-${i}.mjs`);
    writeFileSync(file, js);
    const run = spawnSync(process.execPath, [file], { encoding: 'utf8', timeout: 60_000 });
    t.log(run.stdout.trim());
    t.is(run.status, 0, run.stderr);
    t.is(run.stderr, '', 'no warnings');
  });
}

checkBaseline();
