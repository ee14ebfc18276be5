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

/** A `console.log(...)` line of a block with the `// …` comment that says what it prints. */
export interface PrintedComment {
  /** 0-based line in the block's source. */
  line: number;
  comment: string;
}

const LOG_WITH_COMMENT = /^(.*?)\bconsole\.log\((.*)\);\s*\/\/ (.+)$/;

/**
 * Rewrites each commented `console.log(` of a block into `__readmeLog(<line>, `, which the
 * prelude defines: it records the line and the formatted output (as console.log prints it)
 * in the file named by $README_LOG, then logs as before.
 */
export function instrumentBlock(source: string): { source: string; comments: PrintedComment[] } {
  const comments: PrintedComment[] = [];
  const lines = source.split('\n').map((text, line) => {
    const match = LOG_WITH_COMMENT.exec(text);
    if (!match) return text;
    comments.push({ line, comment: match[3]!.trim() });
    return `${match[1]}__readmeLog(${line}, ${match[2]}); // ${match[3]}`;
  });
  const prelude = [
    "import { formatWithOptions as __readmeFormat } from 'node:util';",
    "import { appendFileSync as __readmeAppend } from 'node:fs';",
    'const __readmeLog = (line: number, ...args: unknown[]): void => {',
    '  __readmeAppend(process.env.README_LOG!, JSON.stringify([line, __readmeFormat({ colors: false }, ...args)]) + "\\n");',
    '  console.log(...args);',
    '};',
  ].join('\n');
  return { source: `${prelude}\n${lines.join('\n')}`, comments };
}

const squeeze = (text: string): string => text.replace(/\s+/g, ' ').trim();

function wildcardMatch(pattern: string, text: string): boolean {
  const parts = squeeze(pattern).split('…').map((p) => p.trim().replace(/[.*+?^${}()|[\]\\]/g, '\\$&'));
  return new RegExp(`^${parts.join('.*?')}$`, 's').test(squeeze(text));
}

/**
 * Whether printed output matches the comment that documents it: whitespace runs count as one
 * space, `…` stands for anything (values that vary: fd numbers, paths), and a trailing
 * parenthetical with words in it that does not match literally is prose ("(the LAPIC is not
 * RAM)", "(SO_PEERCRED)"), while a number in parentheses ("(4096)") is always part of the value.
 */
export function matchesComment(comment: string, printed: string): boolean {
  if (wildcardMatch(comment, printed)) return true;
  const prose = /\s+\([^()]*[A-Za-z][^()]*\)$/.exec(comment); // words, not a value like (4096)
  return prose !== null && wildcardMatch(comment.slice(0, prose.index), printed);
}
