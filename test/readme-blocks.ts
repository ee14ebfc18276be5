// The README's API examples, as the doc tests see them: each ```ts block of the "## API"
// section, with the package import pointed at this checkout's lib/.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { PROJECT_ROOT } from '../vm/paths.js';

export interface ReadmeBlock {
  /** The heading the block sits under. */
  title: string;
  source: string;
}

export function readmeApiBlocks(libIndex: string): ReadmeBlock[] {
  const readme = readFileSync(join(PROJECT_ROOT, 'README.md'), 'utf8');
  const api = /^## API\n([\s\S]*?)(?=^## )/m.exec(readme)?.[1];
  if (!api) throw new Error('README.md has no "## API" section');
  const blocks: ReadmeBlock[] = [];
  let title = 'API';
  for (const part of api.split(/^(### .*)$/m)) {
    if (part.startsWith('### ')) {
      title = part.slice(4).trim();
      continue;
    }
    for (const match of part.matchAll(/```ts\n([\s\S]*?)```/g)) {
      blocks.push({ title, source: match[1]!.replaceAll(`from 'guest-dmabuf'`, `from '${libIndex}'`) });
    }
  }
  return blocks;
}
