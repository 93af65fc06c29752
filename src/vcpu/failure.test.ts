// Failure reports as a reader sees them: RIP, CS:IP, the CPU mode and the bytes at RIP, and — for a triple fault
// on AMD SVM, where KVM re-initialises the vCPU before it returns — a plain statement that the state is lost.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ArrayGuestMemory } from '../boot/testing/array-memory.js';
import { BOOT_SEGMENTS } from '../boot/cpu-modes.js';
import type { Regs, Segment, Sregs } from '../../kvm/bindings/types.js';
import { formatShutdown, isInitState } from './failure.js';

const regs = (rip: bigint): Regs => ({
  rax: 0n,
  rbx: 0n,
  rcx: 0n,
  rdx: 0x3f8n,
  rsi: 0n,
  rdi: 0n,
  rsp: 0xff0n,
  rbp: 0n,
  r8: 0n,
  r9: 0n,
  r10: 0n,
  r11: 0n,
  r12: 0n,
  r13: 0n,
  r14: 0n,
  r15: 0n,
  rip,
  rflags: 2n,
});

const realSegment = (selector: number, base: bigint): Segment => ({
  base,
  limit: 0xffff,
  selector,
  type: 3,
  present: 1,
  dpl: 0,
  db: 0,
  s: 1,
  l: 0,
  g: 0,
  avl: 0,
  unusable: 0,
});

const sregs = (cs: Segment, cr0: bigint): Sregs => ({
  cs,
  ds: BOOT_SEGMENTS.data,
  es: BOOT_SEGMENTS.data,
  fs: BOOT_SEGMENTS.data,
  gs: BOOT_SEGMENTS.data,
  ss: BOOT_SEGMENTS.data,
  tr: BOOT_SEGMENTS.tss,
  ldt: realSegment(0, 0n),
  gdt: { base: 0x500n, limit: 0x2f },
  idt: { base: 0n, limit: 0 },
  cr0,
  cr2: 0n,
  cr3: 0n,
  cr4: 0n,
  cr8: 0n,
  efer: 0n,
  apicBase: 0xfee00900n,
  interruptBitmap: [0n, 0n, 0n, 0n],
});

/** 32-bit protected mode (no paging), ud2 at 0x1010. */
function protectedModeFault() {
  const mem = new ArrayGuestMemory([{ start: 0, size: 0x10000 }]);
  mem.write(0x1010, new Uint8Array([0x0f, 0x0b]));
  return { mem, regs: regs(0x1010n), sregs: sregs(BOOT_SEGMENTS.code32, 0x11n) };
}

/** What KVM on SVM leaves after a shutdown: the INIT state (CR0.CD/NW as the guest had them, here clear). */
const initState = () => ({
  regs: regs(0xfff0n),
  sregs: sregs({ ...realSegment(0xf000, 0xffff0000n), type: 0xb }, 0x10n),
});

test('failure report: a triple fault where KVM kept the state names RIP, CS:IP, the CPU mode and the bytes at RIP', () => {
  const f = protectedModeFault();
  const text = formatShutdown('vCPU 0: triple fault', f.regs, f.sregs, f.mem);
  assert.match(text, /^tsvmm: vCPU 0: triple fault\n/);
  assert.match(text, /RIP 0x0000000000001010 \(CS:IP 0010:1010\), protected mode \(32-bit\)/);
  assert.match(text, /instruction bytes at RIP: 0f 0b/);
  assert.match(text, /RDX 0x00000000000003f8/);
});

test('failure report: after a triple fault on SVM (vCPU re-initialised to f000:fff0) the report says the state at the fault is lost', () => {
  const { mem } = protectedModeFault();
  const s = initState();
  assert.ok(isInitState(s.regs, s.sregs));
  const text = formatShutdown('vCPU 0: triple fault', s.regs, s.sregs, mem);
  assert.match(text, /RIP and CPU mode at the fault: unknown — KVM re-initialised the vCPU/);
  assert.not.match(text, /RIP 0x/, 'no register dump of the INIT state');
  assert.not.match(text, /instruction bytes/);
});

test('failure report: only the exact INIT state counts as re-initialised (a real-mode guest at another address does not)', () => {
  const s = initState();
  assert.not.ok(isInitState(regs(0x7c00n), s.sregs));
  assert.not.ok(isInitState(s.regs, { ...s.sregs, cs: realSegment(0, 0n) }));
  assert.not.ok(isInitState(s.regs, { ...s.sregs, cr0: 0x11n }));
});

test.run();
