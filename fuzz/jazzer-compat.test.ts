// The patch that lets Jazzer.js's prebuilt addon load on glibc < 2.38 (jazzer-compat.ts), on the addon as shipped.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { patchAddon } from './jazzer-compat.js';
import { repoRoot } from './jazzer.js';

const prebuilt = join(repoRoot, 'node_modules', '@jazzer.js', 'fuzzer', 'prebuilds', 'fuzzer-linux-x64.node');
// The pristine addon: jazzer.ts keeps it as .orig once it has patched the one in place.
const shipped = existsSync(`${prebuilt}.orig`) ? `${prebuilt}.orig` : prebuilt;

test('jazzer-compat: the shipped addon has 4 references to relax, and patching twice changes nothing more', () => {
  const elf = readFileSync(shipped);
  const before = Buffer.from(elf);
  const first = patchAddon(elf);
  assert.ok(first === 4 || first === 0, `4 references (or 0 when the shipped addon no longer needs it), got ${first}`);
  assert.is(patchAddon(elf), 0, 'a patched addon needs nothing more');
  const changed = elf.reduce((n, b, i) => n + (b === before[i] ? 0 : 1), 0);
  assert.ok(changed <= 16, `only table entries change (${changed} bytes), never the code`);
});

test('jazzer-compat: anything but a 64-bit little-endian ELF is refused', () => {
  assert.throws(() => patchAddon(Buffer.from('not an ELF file at all, just text')), /64-bit LE ELF/);
});

test.run();
