// The header check for src/sys/epoll.ts: a C program prints every constant epoll.ts exports and the layout of
// struct epoll_event as <sys/epoll.h> defines them (packed on x86-64); each must equal the TypeScript value.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync } from 'node:fs';
import { compileC, runC } from '../../test/support/cc.js';
import { testIf } from '../../test/support/skip.js';
import * as epoll from './epoll.js';

const noHeader =
  existsSync('/usr/include/x86_64-linux-gnu/sys/epoll.h') || existsSync('/usr/include/sys/epoll.h')
    ? null
    : '<sys/epoll.h> is not installed (libc6-dev)';

/** Exported numbers that are layout facts rather than macros, and the C expression each is checked against. */
const derived: Record<string, string> = {
  EPOLL_EVENT_SIZE: 'sizeof(struct epoll_event)',
  EPOLL_EVENT_EVENTS_OFFSET: 'offsetof(struct epoll_event, events)',
  EPOLL_EVENT_DATA_OFFSET: 'offsetof(struct epoll_event, data)',
};

function checks(): { name: string; expected: bigint; c: string }[] {
  return Object.entries(epoll)
    .filter(([name, value]) => /^[A-Z][A-Z0-9_]+$/.test(name) && typeof value === 'number')
    .map(([name, value]) => ({
      name,
      expected: BigInt((value as number) >>> 0),
      c: derived[name] ?? `(unsigned)(${name})`,
    }));
}

testIf(test, noHeader, 'epoll abi: every constant and the epoll_event layout match <sys/epoll.h>', () => {
  const list = checks();
  const source = [
    '#include <stddef.h>',
    '#include <stdio.h>',
    '#include <sys/epoll.h>',
    'int main(void) {',
    ...list.map((c) => `  printf("%s %llu\\n", ${JSON.stringify(c.name)}, (unsigned long long)(${c.c}));`),
    '  return 0;',
    '}',
    '',
  ].join('\n');
  const values = new Map(
    runC(compileC(source, { name: 'epoll-abi' }))
      .trim()
      .split('\n')
      .map((l) => l.split(' ') as [string, string]),
  );
  const wrong = list
    .filter((c) => BigInt(values.get(c.name) ?? -1) !== c.expected)
    .map((c) => `${c.name}: tsvmm ${c.expected}, header ${values.get(c.name)}`);
  assert.equal(wrong, []);
  assert.ok(list.length >= 14, `checked ${list.length} values`);
});

test.run();
