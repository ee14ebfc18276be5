// The README's API examples run as written, against the real driver, each as its own program,
// and print what their `// …` comments say they print.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import ts from 'typescript';
import { PROJECT_ROOT } from '../../vm/paths.js';
import { baselineGuard } from './helpers/baseline.js';
import { instrumentBlock, matchesComment, readmeApiBlocks } from '../readme-blocks.js';
import { Weston } from './helpers/weston.js';

const checkBaseline = baselineGuard(test);
const dir = mkdtempSync('/tmp/readme-');
test.after.always(() => rmSync(dir, { recursive: true, force: true }));

/**
 * Comments that show an example value, not this run's: `e.g.` says the value depends on the
 * machine. `dev.path` is /dev/guest-udmabuf where the kernel has udmabuf built in (6.12) and
 * /dev/udmabuf elsewhere, so the README shows one of them.
 */
const isExampleValue = (comment: string): boolean => comment.startsWith('e.g.');

for (const [i, block] of readmeApiBlocks(join(PROJECT_ROOT, 'dist', 'lib', 'index.js')).entries()) {
  test.serial(`README, ${block.title}: the example runs and prints what its comments say`, async (t) => {
    const { source, comments } = instrumentBlock(block.source);
    const js = ts.transpileModule(source, { compilerOptions: { target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.ESNext } }).outputText;
    const file = join(dir, `block-${i}.mjs`);
    const log = join(dir, `block-${i}.log`);
    writeFileSync(file, js);
    // A block that talks to a compositor gets a real one: a headless weston of its own,
    // found the usual way ($WAYLAND_DISPLAY under $XDG_RUNTIME_DIR).
    const weston = /WaylandClient/.test(block.source) ? await Weston.start() : undefined;
    try {
      const env = { ...process.env, README_LOG: log, ...(weston ? { XDG_RUNTIME_DIR: weston.runtimeDir, WAYLAND_DISPLAY: weston.socket } : {}) };
      const run = spawnSync(process.execPath, [file], { encoding: 'utf8', timeout: 120_000, env });
      t.log(run.stdout.trim());
      t.is(run.status, 0, run.stderr);
      t.is(run.stderr, '', 'no warnings');
    } finally {
      await weston?.stop();
    }
    const printed = new Map<number, string[]>();
    if (existsSync(log)) {
      for (const entry of readFileSync(log, 'utf8').trim().split('\n').filter(Boolean)) {
        const [line, text] = JSON.parse(entry) as [number, string];
        printed.set(line, [...(printed.get(line) ?? []), text]);
      }
    }
    for (const { line, comment } of comments) {
      const outputs = printed.get(line) ?? [];
      if (isExampleValue(comment)) {
        t.is(outputs.length, 1, `line ${line + 1} (${comment}) printed once; its value is only an example`);
        continue;
      }
      t.is(outputs.length, 1, `line ${line + 1}: printed once (${comment})`);
      for (const output of outputs) t.true(matchesComment(comment, output), `line ${line + 1}: printed "${output}", the comment says "${comment}"`);
    }
  });
}

checkBaseline();
