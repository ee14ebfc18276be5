// How the README doc test compares printed values with their comments.
import test from 'ava';
import { instrumentBlock, matchesComment } from '../readme-blocks.js';

test('comments match printed output literally, with … as a wildcard and a trailing parenthetical as prose', (t) => {
  t.true(matchesComment("21 8388608n [ 'shrink', 'grow' ] 0", "21 8388608n [ 'shrink', 'grow' ] 0"));
  t.false(matchesComment("21 8388608n [ 'shrink', 'grow' ] 0", "22 8388608n [ 'shrink', 'grow' ] 0"));
  t.true(matchesComment('… { offset: 256, stride: 4096 } 1024 768 34325258 0n', '23 { offset: 256, stride: 4096 } 1024 768 34325258 0n'));
  t.false(matchesComment('… { offset: 256, stride: 4096 } 1024 768 34325258 0n', '23 { offset: 0, stride: 4096 } 1024 768 34325258 0n'));
  t.true(matchesComment('{ listLimit: 1024, sizeLimitBytes: 67108864n, parametersPath: … }', "{\n  listLimit: 1024,\n  sizeLimitBytes: 67108864n,\n  parametersPath: '/sys/module/guest_udmabuf/parameters'\n}"));
  t.true(matchesComment('ERR_INVALID_RANGE 0 range 0: offset 0x1800 is not page-aligned (4096)', 'ERR_INVALID_RANGE 0 range 0: offset 0x1800 is not page-aligned (4096)'));
  t.false(matchesComment('ERR_INVALID_RANGE 0 range 0: offset 0x1800 is not page-aligned (4096)', 'ERR_INVALID_RANGE 0 range 0: offset 0x1800 is not page-aligned'));
  t.true(matchesComment('1 4276092928n pc.ram above 4g (the LAPIC is not RAM)', '1 4276092928n pc.ram above 4g'));
  t.false(matchesComment('1 4276092928n pc.ram above 4g (the LAPIC is not RAM)', '1 4276092928n pc.ram below 4g'));
  t.true(matchesComment('surface 1 1 { pid: …, uid: …, gid: … } (SO_PEERCRED)', 'surface 1 1 { pid: 257, uid: 0, gid: 0 }'));
  t.false(matchesComment('surface 1 1 { pid: …, uid: …, gid: … } (SO_PEERCRED)', 'surface 1 0 { pid: 257, uid: 0, gid: 0 }'));
  t.false(matchesComment('SO_PEERCRED', "surface 1 1 { pid: 12, uid: 0, gid: 0 }"), 'prose alone is not output');
});

test('instrumentBlock records each commented console.log by its line', (t) => {
  const { source, comments } = instrumentBlock("const a = 1;\nconsole.log(a, 'x'); // 1 x\nconsole.log('plain');\n  console.log(await f()); // 2n\n");
  t.deepEqual(comments, [{ line: 1, comment: '1 x' }, { line: 3, comment: '2n' }]);
  t.regex(source, /__readmeLog\(1, a, 'x'\); \/\/ 1 x/);
  t.regex(source, /^ {2}__readmeLog\(3, await f\(\)\); \/\/ 2n$/m);
  t.regex(source, /^console\.log\('plain'\);$/m);
});
