// `npm run generate:wayland`: regenerates lib/wayland/protocol/*.ts from the installed XML.
// With --check it writes nothing and fails when a checked-in module differs.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PROJECT_ROOT } from '../../../vm/paths.js';
import { generateAll } from './generate-all.js';

const check = process.argv.includes('--check');
let stale = 0;
for (const { module, text } of generateAll()) {
  const file = join(PROJECT_ROOT, 'lib', 'wayland', 'protocol', `${module}.ts`);
  const current = existsSync(file) ? readFileSync(file, 'utf8') : '';
  if (current === text) continue;
  if (check) {
    console.error(`${file} is stale: run npm run generate:wayland`);
    stale++;
  } else {
    writeFileSync(file, text);
    console.log(`wrote ${file}`);
  }
}
process.exitCode = stale ? 1 : 0;
