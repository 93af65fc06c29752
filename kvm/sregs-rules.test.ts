// KVM's consistency rules for the special registers, as tsvmm checks them before a checkpoint leaves the process and
// before a restore changes anything: each rule named, and — under real KVM — KVM_SET_SREGS refusing exactly the sets
// the rules refuse.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { testIf } from '../test/support/skip.js';
import { kvmMissing, RealModeGuest } from './testing/test-guest.js';
import { Errno } from '../src/sys/errno.js';
import { isErrno } from './fd-ioctl.js';
import { describeSregs, sregsRuleBroken } from './sregs-rules.js';
import { VcpuStateError } from './vcpu-state.js';
import type { Segment, Sregs } from './bindings/types.js';

const noKvm = kvmMissing();
const HLT = [0xf4];

const segment = (selector: number, type: number, over: Partial<Segment> = {}): Segment => ({
  base: 0n,
  limit: 0xffffffff,
  selector,
  type,
  present: 1,
  dpl: 0,
  db: 1,
  s: 1,
  l: 0,
  g: 1,
  avl: 0,
  unusable: 0,
  ...over,
});

/** A flat 32-bit protected-mode set without paging (the test guests' own), changed by `over`. */
function protectedMode(over: Partial<Sregs> = {}): Sregs {
  const data = segment(0x10, 3);
  return {
    cs: segment(0x08, 11),
    ds: data,
    es: data,
    fs: data,
    gs: data,
    ss: data,
    tr: segment(0x18, 11, { s: 0, limit: 0x67, g: 0, db: 0 }),
    ldt: segment(0, 2, { s: 0, present: 0, limit: 0xffff, g: 0, db: 0, unusable: 1 }),
    gdt: { base: 0x500n, limit: 0x1f },
    idt: { base: 0n, limit: 0x3ff },
    cr0: 0x31n,
    cr2: 0n,
    cr3: 0n,
    cr4: 0n,
    cr8: 0n,
    efer: 0n,
    apicBase: 0xfee00900n,
    interruptBitmap: [0n, 0n, 0n, 0n],
    ...over,
  };
}

const longMode = (over: Partial<Sregs> = {}): Sregs =>
  protectedMode({
    cs: segment(0x08, 11, { l: 1, db: 0 }),
    cr0: 0x80050033n,
    cr3: 0x2000n,
    cr4: 0x20n,
    efer: 0x500n,
    ...over,
  });

/** Sets that keep every rule, and sets that each break one, with the words that name it. */
const KEPT: [string, Sregs][] = [
  ['32-bit protected mode without paging', protectedMode()],
  ['32-bit paging', protectedMode({ cr0: 0x80000011n, cr3: 0x2000n })],
  ['long mode', longMode()],
  ['long mode in a 32-bit code segment (compatibility mode)', longMode({ cs: segment(0x08, 11) })],
  ['EFER.LME before paging is on (on the way into long mode)', protectedMode({ efer: 0x100n, cr4: 0x20n })],
];
const BROKEN: [string, Sregs, RegExp][] = [
  [
    "the soak's 116th capture: CR0.PG and a 64-bit CS, CR4 and EFER 0",
    longMode({ cr4: 0n, efer: 0n }),
    /64-bit code segment \(CS\.L\) outside long mode/,
  ],
  ['EFER.LMA without paging', protectedMode({ efer: 0x500n }), /EFER\.LMA is set outside long mode/],
  ['long mode without CR4.PAE', longMode({ cr4: 0n }), /without CR4\.PAE/],
  ['EFER.LME and CR0.PG without EFER.LMA', longMode({ efer: 0x100n }), /without EFER\.LMA/],
  ['CR0.PG without CR0.PE', protectedMode({ cr0: 0x80000010n }), /CR0\.PG is set without CR0\.PE/],
  ['CR0.NW without CR0.CD', protectedMode({ cr0: 0x20000011n }), /CR0\.NW is set without CR0\.CD/],
  ['CR0 bits above 31', protectedMode({ cr0: 0x100000011n }), /above bit 31/],
];

test('sregs rules: sets a running guest can have keep every rule', () => {
  for (const [name, s] of KEPT) assert.is(sregsRuleBroken(s), null, name);
});

test('sregs rules: each broken rule is named', () => {
  for (const [name, s, words] of BROKEN) assert.match(sregsRuleBroken(s) ?? '', words, name);
});

test('sregs rules: the description shows the registers the rules look at', () => {
  assert.is(
    describeSregs(longMode({ cr4: 0n, efer: 0n })),
    'cr0=0x80050033 cr3=0x2000 cr4=0x0 efer=0x0 apic_base=0xfee00900 cs=0x8 l=1 db=0',
  );
});

testIf(
  test,
  noKvm,
  'sregs rules: KVM_SET_SREGS takes every set the rules keep and refuses every set they break',
  () => {
    const g = new RealModeGuest([...HLT]);
    try {
      for (const [name, s] of KEPT) {
        try {
          g.vcpu.setSregs(s);
        } catch (e) {
          assert.unreachable(`KVM refused ${name}: ${(e as Error).message}`);
        }
      }
      for (const [name, s] of BROKEN) {
        assert.throws(
          () => g.vcpu.setSregs(s),
          (e: unknown) => isErrno(e, Errno.EINVAL),
          `KVM refuses: ${name}`,
        );
      }
    } finally {
      g.close();
    }
  },
);

testIf(test, noKvm, 'sregs rules: a restore of a state that breaks them is refused before the vCPU changes', () => {
  const g = new RealModeGuest([...HLT]);
  try {
    const before = g.vcpu.getState();
    const bad = structuredClone(before);
    bad.sregs = longMode({ cr4: 0n, efer: 0n });
    bad.regs.rip = 0x1234n;
    assert.throws(
      () => g.vcpu.checkState(bad),
      (e: Error) =>
        e instanceof VcpuStateError && /KVM would refuse the special registers \(a 64-bit code/.test(e.message),
    );
    assert.equal(g.vcpu.getRegs(), before.regs, 'the registers are unchanged');
    assert.equal(g.vcpu.getSregs(), before.sregs, 'the special registers are unchanged');
  } finally {
    g.close();
  }
});

test.run();
