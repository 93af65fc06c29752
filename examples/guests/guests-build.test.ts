// The guests as build products: they build (and are cached), obey this host's instruction rules, and tsvmm's own
// loaders accept them with the entry points and addresses the guests' symbols say.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execFile } from 'node:child_process';
import { statSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import { testIf } from '../../test/support/skip.js';
import {
  buildGuest,
  patchOutloop,
  toolchainUnavailable,
  COUNTER_STATE_ADDR,
  GUEST_NAMES,
  GUESTS,
  OUTLOOP_ITERATIONS_OFFSET,
  OUTLOOP_PORT_OFFSET,
  type BuiltGuest,
} from './build.js';
import { loadMultiboot } from '../../src/boot/multiboot.js';
import { loadFlat } from '../../src/boot/flat.js';
import { detectKernelFormat } from '../../src/boot/detect.js';
import { e820FromRam } from '../../src/boot/e820.js';
import { ArrayGuestMemory } from '../../src/boot/testing/array-memory.js';

const run = promisify(execFile);
const MiB = 1024 * 1024;

async function binutilsMissing(): Promise<string | null> {
  for (const tool of ['objdump', 'nm']) {
    try {
      await run(tool, ['--version']);
    } catch {
      return `${tool} not found (binutils)`;
    }
  }
  return null;
}
const reason = (await toolchainUnavailable()) ?? (await binutilsMissing());
const it = (name: string, fn: () => Promise<void>) => testIf(test, reason, name, fn);

/** The ELF that carries a guest's symbols (for .bin outputs the build keeps it beside the image). */
const symbolFile = (g: BuiltGuest) => (g.path.endsWith('.bin') ? g.path.replace(/\.bin$/, '.sym.elf') : g.path);

async function symbols(g: BuiltGuest): Promise<Map<string, number>> {
  const { stdout } = await run('nm', [symbolFile(g)]);
  const out = new Map<string, number>();
  for (const line of stdout.split('\n')) {
    const [addr, , name] = line.trim().split(/\s+/);
    if (name) out.set(name, parseInt(addr, 16));
  }
  return out;
}

it('guests: every guest builds, and a second build is a cache hit with the same path', async () => {
  for (const name of GUEST_NAMES) {
    const first = await buildGuest(name);
    const built = statSync(first.path);
    const again = await buildGuest(name);
    assert.is(again.path, first.path);
    // A rebuild renames a new file over the output (a new inode); a cache hit leaves the file alone.
    const now = statSync(again.path);
    assert.ok(now.ino === built.ino && now.mtimeMs === built.mtimeMs, `${name}: cached build should not recompile`);
    assert.is(first.format, GUESTS[name].kind);
  }
});

it('guests: no instruction this host cannot emulate (iret, int n, int3, xsave/xrstor, cmpxchg16b)', async () => {
  const forbidden = /\s(iret[wdq]?|int3?|int1|into|xsave\w*|xrstor\w*|cmpxchg16b)\s/;
  for (const name of GUEST_NAMES) {
    const g = await buildGuest(name);
    const spec = GUESTS[name];
    // A bare multiboot guest below 1 MiB (realmode-long) runs in real mode after a few 32-bit instructions.
    const arch = g.mode === 'real' || (spec.kind === 'multiboot' && spec.bare) ? ['-m', 'i8086'] : [];
    const { stdout } = await run('objdump', ['-d', ...arch, symbolFile(g)], { maxBuffer: 64 * MiB });
    const bad = stdout.split('\n').filter((l) => forbidden.test(`${l} `));
    assert.equal(bad, [], `${name} uses forbidden instructions`);
  }
});

it("guests: multiboot guests load with tsvmm's loader at 1 MiB, entering at _start with the info in EBX", async () => {
  for (const name of GUEST_NAMES.filter((n) => {
    const s = GUESTS[n];
    return s.kind === 'multiboot' && !s.bare;
  })) {
    const g = await buildGuest(name);
    const image = new Uint8Array(await readFile(g.path));
    assert.is(detectKernelFormat(image).kind, 'multiboot', name);
    const mem = new ArrayGuestMemory([{ start: 0, size: 16 * MiB }]);
    const boot = loadMultiboot(mem, image, {
      memoryMap: e820FromRam([{ start: 0, size: 16 * MiB }]),
      cmdline: `${name} code=3`,
    });
    const sym = await symbols(g);
    assert.is(boot.format, g.multiboot, name);
    assert.is(boot.entry, sym.get('_start'), `${name}: entry is _start`);
    assert.is(boot.kernel.start, 0x100000, name);
    assert.is(boot.kernel.end, sym.get('__bss_end'), `${name}: kernel ends with its bss`);
    assert.is(Number(boot.cpu.regs.rbx), boot.infoAddress);
    assert.ok(boot.infoAddress >= boot.kernel.end, `${name}: info after the kernel`);
  }
});

it('guests: a bare multiboot guest (realmode-long) loads where it is linked, below 1 MiB, entering at start', async () => {
  const g = await buildGuest('realmode-long');
  const spec = GUESTS['realmode-long'];
  if (spec.kind !== 'multiboot' || !spec.bare) throw new Error('realmode-long is a bare multiboot guest');
  const image = new Uint8Array(await readFile(g.path));
  const mem = new ArrayGuestMemory([{ start: 0, size: 16 * MiB }]);
  const boot = loadMultiboot(mem, image, {
    memoryMap: e820FromRam([{ start: 0, size: 16 * MiB }]),
    cmdline: 'realmode-long',
  });
  const sym = await symbols(g);
  assert.is(boot.entry, sym.get('start'));
  assert.ok(
    boot.kernel.start < spec.bare.linkAt + 0x1000 && boot.kernel.end <= 0x10000,
    'inside the first 64 KiB: real mode reaches all of it',
  );
});

it("guests: the counter's state page is at its documented fixed address", async () => {
  const g = await buildGuest('counter');
  const sym = await symbols(g);
  assert.is(sym.get('counter_state'), COUNTER_STATE_ADDR);
});

it("guests: flat guests load at their load address in their mode; outloop's parameters are patchable", async () => {
  for (const name of GUEST_NAMES.filter((n) => GUESTS[n].kind === 'flat')) {
    const g = await buildGuest(name);
    const image = new Uint8Array(await readFile(g.path));
    const mem = new ArrayGuestMemory([{ start: 0, size: 16 * MiB }]);
    const cpu = loadFlat(mem, image, { loadAddress: g.loadAddress!, entry: g.entry, mode: g.mode! });
    assert.equal(mem.read(g.loadAddress!, image.length), image, name);
    assert.is(Number(cpu.sregs.cs!.base) + Number(cpu.regs.rip), g.entry, name);
  }
  const outloop = new Uint8Array(await readFile((await buildGuest('outloop')).path));
  const dv = new DataView(outloop.buffer);
  assert.is(dv.getUint32(OUTLOOP_ITERATIONS_OFFSET, true), 10000);
  assert.is(dv.getUint16(OUTLOOP_PORT_OFFSET, true), 0x80);
  const patched = new DataView(patchOutloop(outloop, { iterations: 123456, port: 0x3ff }).buffer);
  assert.is(patched.getUint32(OUTLOOP_ITERATIONS_OFFSET, true), 123456);
  assert.is(patched.getUint16(OUTLOOP_PORT_OFFSET, true), 0x3ff);
  assert.throws(() => patchOutloop(new Uint8Array(16), {}), /not an outloop image/);
});

test.run();
