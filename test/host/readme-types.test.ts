// The README's API examples typecheck, strictly, against lib/: the docs match the types.
import test from 'ava';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import ts from 'typescript';
import { PROJECT_ROOT } from '../../vm/paths.js';
import { readmeApiBlocks } from '../readme-blocks.js';

test('every API example in the README typechecks under strict settings', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'readme-types-'));
  try {
    const blocks = readmeApiBlocks(join(PROJECT_ROOT, 'lib', 'index.js'));
    t.true(blocks.length >= 5, `found ${blocks.length} blocks`);
    writeFileSync(join(dir, 'package.json'), '{"type":"module"}');
    const files = blocks.map((block, i) => {
      const file = join(dir, `block-${i}.ts`);
      writeFileSync(file, `${block.source}\nexport {};\n`);
      return file;
    });
    const program = ts.createProgram(files, {
      strict: true,
      noEmit: true,
      target: ts.ScriptTarget.ES2022,
      module: ts.ModuleKind.NodeNext,
      moduleResolution: ts.ModuleResolutionKind.NodeNext,
      lib: ['lib.es2022.d.ts', 'lib.esnext.disposable.d.ts'],
      types: ['node'],
      typeRoots: [join(PROJECT_ROOT, 'node_modules', '@types')],
      skipLibCheck: true,
    });
    const problems = ts.getPreEmitDiagnostics(program).map((d) => {
      const where = d.file ? `${blocks[files.indexOf(d.file.fileName)]?.title ?? d.file.fileName}: ` : '';
      return where + ts.flattenDiagnosticMessageText(d.messageText, '\n');
    });
    t.deepEqual(problems, []);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
