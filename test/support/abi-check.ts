// How every header check works (kvm/bindings, vfio/bindings, src/sys's socket and tun): tsvmm's own tables become
// a list of checks, each a key, the value tsvmm uses and a C expression; a generated C program prints every
// expression as the system headers define it, and each printed value must equal tsvmm's. Nothing is typed twice:
// a constant or struct field added to the tables is checked automatically.
import type { Layout } from '../../src/sys/c-layout.js';
import { compileC, runC } from './cc.js';

export interface AbiCheck {
  key: string;
  expected: bigint;
  /** The C expression whose value the headers give. */
  c: string;
  /** A macro to test with #ifdef first, so a name the headers lack reads MISSING rather than failing to compile. */
  guard?: string;
}

/** sizeof and _Alignof of every struct, and each field's offset, size (unless flexible) and element size. */
export function layoutChecks(layouts: Iterable<Layout>): AbiCheck[] {
  const list: AbiCheck[] = [];
  for (const layout of layouts) {
    const t = `struct ${layout.name}`;
    list.push({ key: `sizeof ${layout.name}`, expected: BigInt(layout.size), c: `sizeof(${t})` });
    list.push({ key: `alignof ${layout.name}`, expected: BigInt(layout.align), c: `_Alignof(${t})` });
    for (const [path, f] of Object.entries(layout.fields)) {
      const member = `((${t} *)0)->${path}`;
      list.push({ key: `offsetof ${layout.name}.${path}`, expected: BigInt(f.offset), c: `offsetof(${t}, ${path})` });
      if (f.length !== 0)
        list.push({ key: `sizeof ${layout.name}.${path}`, expected: BigInt(f.size), c: `sizeof(${member})` });
      if (f.elementSize !== undefined)
        list.push({
          key: `sizeof ${layout.name}.${path}[0]`,
          expected: BigInt(f.elementSize),
          c: `sizeof(${member}[0])`,
        });
    }
  }
  return list;
}

export interface AbiProgram {
  /** Its name under build/ (cc.ts caches by source). */
  name: string;
  /** Feature macros, #include lines and helper definitions: the program's first lines (<stddef.h> and <stdio.h> follow). */
  preamble: readonly string[];
  checks: readonly AbiCheck[];
  /** More statements inside main, after the checks; they may print with P(key, value). */
  extra?: readonly string[];
}

/** Compiles and runs the check program; returns key → the printed value ("MISSING" for an undefined guard). */
export function headerValues(p: AbiProgram): Map<string, string> {
  const lines = [
    ...p.preamble,
    '#include <stddef.h>',
    '#include <stdio.h>',
    '',
    '#define P(key, value) printf("%s %llu\\n", key, (unsigned long long)(value))',
    '',
    'int main(void) {',
  ];
  for (const c of p.checks) {
    if (c.guard) lines.push(`#ifdef ${c.guard}`);
    lines.push(`  P(${JSON.stringify(c.key)}, ${c.c});`);
    if (c.guard) lines.push('#else', `  printf("%s MISSING\\n", ${JSON.stringify(c.key)});`, '#endif');
  }
  lines.push(...(p.extra ?? []), '  return 0;', '}', '');
  const values = new Map<string, string>();
  for (const line of runC(compileC(lines.join('\n'), { name: p.name }))
    .trim()
    .split('\n')) {
    const at = line.lastIndexOf(' ');
    values.set(line.slice(0, at), line.slice(at + 1));
  }
  return values;
}

/** Every check whose printed value is not tsvmm's, one line each (empty: all equal). */
export function abiMismatches(checks: readonly AbiCheck[], values: ReadonlyMap<string, string>): string[] {
  const wrong: string[] = [];
  for (const c of checks) {
    const got = values.get(c.key);
    if (got === undefined) wrong.push(`${c.key}: not printed`);
    else if (got === 'MISSING') wrong.push(`${c.key}: not defined by the headers`);
    else if (BigInt(got) !== c.expected) wrong.push(`${c.key}: tsvmm ${c.expected}, headers ${got}`);
  }
  return wrong;
}
