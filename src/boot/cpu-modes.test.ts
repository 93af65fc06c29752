import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { Segment, Sregs } from '../../kvm/bindings/types.js';
import {
  bootCpuState,
  decodeDescriptor,
  encodeDescriptor,
  longModeState,
  protectedModeState,
  realModeState,
  reservedBootRanges,
  BOOT_GDT_ADDR,
  BOOT_PML4_ADDR,
  BOOT_SEGMENTS,
  BOOT_STACK_TOP,
  BOOT_TSS_ADDR,
  CR0_ET,
  CR0_NE,
  CR0_PE,
  CR0_PG,
  CR4_PAE,
  EFER_LMA,
  EFER_LME,
  PTE_PCD,
  PTE_PS,
  RESERVED_BOOT_LOW,
  RESERVED_BOOT_PAGE_TABLES,
  SEL_CODE32,
  SEL_CODE64,
  SEL_DATA,
  SEL_TSS,
  type BootCpuState,
  type CpuMode,
} from './cpu-modes.js';
import { ArrayGuestMemory } from './testing/array-memory.js';

const MiB = 1024 * 1024;
const newRam = () => new ArrayGuestMemory([{ start: 0, size: 16 * MiB }]);

/** Reads the descriptor a selector names from the GDT in RAM, as the CPU would on a segment load. */
function gdtSegment(mem: ArrayGuestMemory, sregs: Partial<Sregs>, selector: number): Segment {
  assert.ok(selector + 7 <= sregs.gdt!.limit, `selector 0x${selector.toString(16)} inside the GDT limit`);
  return decodeDescriptor(mem.readU64(Number(sregs.gdt!.base) + selector), selector);
}

/**
 * The VMX guest-state checks (Intel SDM vol. 3, 27.3.1.2 "Checks on Guest Segment Registers" and 27.3.1.1) that
 * a loader's state can get wrong. Returns the list of violations.
 */
function vmxViolations(state: BootCpuState): string[] {
  const s = state.sregs as Sregs;
  const out: string[] = [];
  const longMode = (s.efer & EFER_LMA) !== 0n;
  const pe = (s.cr0 & CR0_PE) !== 0n;
  const limitOk = (seg: Segment) => (seg.g ? (seg.limit & 0xfff) === 0xfff : seg.limit >>> 20 === 0);
  if (((s.efer & EFER_LME) !== 0n) !== longMode) out.push('EFER.LME != EFER.LMA');
  if (longMode && (s.cr0 & CR0_PG) === 0n) out.push('long mode without CR0.PG');
  if (longMode && (s.cr4 & CR4_PAE) === 0n) out.push('long mode without CR4.PAE');
  if ((s.cr0 & CR0_PG) !== 0n && !pe) out.push('CR0.PG without CR0.PE');
  if (state.regs.rflags === undefined || (state.regs.rflags & 2n) === 0n) out.push('RFLAGS bit 1 clear');
  for (const name of ['cs', 'ds', 'es', 'fs', 'gs', 'ss'] as const) {
    const seg = s[name];
    if (seg.unusable) continue;
    if (!seg.present) out.push(`${name} usable but not present`);
    if (seg.s !== 1) out.push(`${name} is not a code/data segment`);
    if (!limitOk(seg)) out.push(`${name} limit 0x${seg.limit.toString(16)} inconsistent with G=${seg.g}`);
    if ((seg.type & 1) === 0) out.push(`${name} type 0x${seg.type.toString(16)} not accessed`);
  }
  if (![0x3, 0x9, 0xb, 0xd, 0xf].includes(s.cs.type) && pe) out.push(`cs type 0x${s.cs.type.toString(16)}`);
  if (pe && s.ss.type !== 0x3 && s.ss.type !== 0x7) out.push(`ss type 0x${s.ss.type.toString(16)}`);
  if (s.ss.dpl !== (s.ss.selector & 3)) out.push('ss.dpl != ss.rpl');
  if (longMode && s.cs.l && s.cs.db) out.push('cs has both L and D/B');
  if (s.tr.unusable || !s.tr.present || s.tr.s !== 0) out.push('TR not a usable system segment');
  if (longMode ? s.tr.type !== 11 : s.tr.type !== 3 && s.tr.type !== 11) out.push(`TR type ${s.tr.type}`);
  if (!limitOk(s.tr)) out.push('TR limit inconsistent with G');
  if (s.tr.selector & 4) out.push('TR selector points into the LDT');
  if (!s.ldt.unusable && (s.ldt.type !== 2 || s.ldt.s !== 0 || !s.ldt.present)) out.push('LDTR usable but not an LDT');
  if (s.gdt.limit > 0xffff || s.idt.limit > 0xffff) out.push('descriptor-table limit above 0xffff');
  return out;
}

test('cpu-modes: descriptors encode to the well-known flat GDT values and decode back', () => {
  assert.is(encodeDescriptor(BOOT_SEGMENTS.code64), 0x00af9b000000ffffn);
  assert.is(encodeDescriptor(BOOT_SEGMENTS.code32), 0x00cf9b000000ffffn);
  assert.is(encodeDescriptor(BOOT_SEGMENTS.data), 0x00cf93000000ffffn);
  assert.is(encodeDescriptor(BOOT_SEGMENTS.tss), 0x00008b0006000067n);
  for (const seg of Object.values(BOOT_SEGMENTS))
    assert.equal(decodeDescriptor(encodeDescriptor(seg), seg.selector), seg);
});

test('cpu-modes: real mode starts at CS:IP = (entry & 0xf0000)>>4 : entry & 0xffff and writes no RAM', () => {
  const mem = newRam();
  const s = realModeState({ entry: 0x7c00 });
  assert.is(s.sregs.cs!.selector, 0);
  assert.is(s.sregs.cs!.base, 0n);
  assert.is(s.regs.rip, 0x7c00n);
  const high = realModeState({ entry: 0x12345 });
  assert.is(high.sregs.cs!.selector, 0x1000);
  assert.is(high.sregs.cs!.base, 0x10000n);
  assert.is(high.regs.rip, 0x2345n);
  assert.is(s.regs.rsp, BigInt(BOOT_STACK_TOP));
  assert.is(s.regs.rflags, 2n);
  assert.is(s.sregs.cr0! & CR0_PE, 0n);
  assert.is(s.sregs.cr0, CR0_ET);
  assert.equal(s.sregs.idt, { base: 0n, limit: 0x3ff });
  for (const seg of ['ds', 'es', 'fs', 'gs', 'ss'] as const) {
    assert.is(s.sregs[seg]!.selector, 0);
    assert.is(s.sregs[seg]!.limit, 0xffff);
  }
  assert.ok(mem.allBytes(0, 0x10000, 0), 'real mode needs no tables in RAM');
  assert.equal(vmxViolations(s), []);
});

test('cpu-modes: protected mode is flat 32-bit with segments matching the GDT written at 0x500', () => {
  const mem = newRam();
  const s = protectedModeState(mem, { entry: 0x100000, stack: 0x80000 });
  assert.is(s.regs.rip, 0x100000n);
  assert.is(s.regs.rsp, 0x80000n);
  assert.is(s.regs.rflags, 2n, 'IF clear, reserved bit 1 set');
  assert.is(s.sregs.cr0, CR0_PE | CR0_ET | CR0_NE);
  assert.is(s.sregs.efer, 0n);
  assert.equal(s.sregs.gdt, { base: BigInt(BOOT_GDT_ADDR), limit: 0x2f });
  assert.is(s.sregs.cs!.selector, SEL_CODE32);
  assert.is(s.sregs.cs!.db, 1);
  assert.is(s.sregs.cs!.l, 0);
  for (const name of ['cs', 'ds', 'es', 'fs', 'gs', 'ss', 'tr'] as const) {
    const seg = s.sregs[name]!;
    assert.equal(gdtSegment(mem, s.sregs, seg.selector), seg, `${name} matches its GDT descriptor`);
  }
  assert.is(s.sregs.ds!.selector, SEL_DATA);
  assert.is(s.sregs.tr!.selector, SEL_TSS);
  assert.is(mem.readU16(BOOT_TSS_ADDR + 0x66), 0x68, 'TSS I/O-map base at its limit: no I/O bitmap');
  assert.equal(vmxViolations(s), []);
});

/** Walks 4-level paging for a virtual address; returns the physical address and the leaf entry, or null. */
function translate(mem: ArrayGuestMemory, cr3: bigint, va: bigint): { pa: bigint; leaf: bigint } | null {
  const mask = 0x000ffffffffff000n;
  const pml4e = mem.readU64(Number((cr3 & mask) + ((va >> 39n) & 0x1ffn) * 8n));
  if (!(pml4e & 1n)) return null;
  const pdpte = mem.readU64(Number((pml4e & mask) + ((va >> 30n) & 0x1ffn) * 8n));
  if (!(pdpte & 1n)) return null;
  assert.is(pdpte & PTE_PS, 0n, 'no 1 GiB pages (not every CPU has them)');
  const pde = mem.readU64(Number((pdpte & mask) + ((va >> 21n) & 0x1ffn) * 8n));
  if (!(pde & 1n)) return null;
  if (pde & PTE_PS) return { pa: (pde & 0x000fffffffe00000n) | (va & 0x1fffffn), leaf: pde };
  const pte = mem.readU64(Number((pde & mask) + ((va >> 12n) & 0x1ffn) * 8n));
  if (!(pte & 1n)) return null;
  return { pa: (pte & mask) | (va & 0xfffn), leaf: pte };
}

test('cpu-modes: long mode page tables identity-map every 2 MiB page of the first 4 GiB, writable, MMIO uncached', () => {
  const mem = newRam();
  const s = longModeState(mem, { entry: 0x200000 });
  assert.is(s.sregs.cr3, BigInt(BOOT_PML4_ADDR));
  const cr3 = s.sregs.cr3!;
  for (let page = 0n; page < 2048n; page++) {
    for (const offset of [0n, 0x1234n, 0x1fffffn]) {
      const va = page * 0x200000n + offset;
      const t = translate(mem, cr3, va);
      assert.ok(t, `0x${va.toString(16)} is mapped`);
      assert.is(t!.pa, va, `0x${va.toString(16)} maps to itself`);
      assert.ok(t!.leaf & 2n, 'writable');
      assert.is(
        (t!.leaf & PTE_PCD) !== 0n,
        va >= 0xc0000000n,
        `cache-disable only in the 3-4 GiB window (0x${va.toString(16)})`,
      );
    }
  }
  assert.is(translate(mem, cr3, 0x100000000n), null, '4 GiB and above are not mapped');
  assert.is(translate(mem, cr3, 0xffff800000000000n), null, 'no high-half mapping is claimed');
  assert.ok(mem.allBytes(RESERVED_BOOT_PAGE_TABLES.end, 0x1000, 0), 'nothing written past the page-table range');
});

test('cpu-modes: long mode runs 64-bit code (L=1, D=0) with LME|LMA, PAE, paging and a busy 64-bit TSS', () => {
  const mem = newRam();
  const s = longModeState(mem, { entry: 0x200000 });
  assert.is(s.sregs.cs!.selector, SEL_CODE64);
  assert.is(s.sregs.cs!.l, 1);
  assert.is(s.sregs.cs!.db, 0);
  assert.is(s.sregs.cs!.type, 0xb);
  assert.is(s.sregs.efer, EFER_LME | EFER_LMA);
  assert.is(s.sregs.cr4, CR4_PAE);
  assert.is(s.sregs.cr0, CR0_PE | CR0_ET | CR0_NE | CR0_PG);
  assert.is(s.sregs.tr!.type, 11);
  assert.is(mem.readU64(BOOT_GDT_ADDR + SEL_TSS + 8), 0n, 'upper half of the 16-byte TSS descriptor');
  for (const name of ['cs', 'ds', 'ss', 'tr'] as const) {
    assert.equal(
      gdtSegment(mem, s.sregs, s.sregs[name]!.selector),
      s.sregs[name],
      `${name} matches its GDT descriptor`,
    );
  }
  assert.equal(vmxViolations(s), []);
});

test('cpu-modes: the reserved ranges are documented per mode and cover everything the state writes', () => {
  assert.equal(reservedBootRanges('real'), [RESERVED_BOOT_LOW]);
  assert.equal(reservedBootRanges('protected'), [RESERVED_BOOT_LOW]);
  assert.equal(reservedBootRanges('long'), [RESERVED_BOOT_LOW, RESERVED_BOOT_PAGE_TABLES]);
  for (const mode of ['real', 'protected', 'long'] as CpuMode[]) {
    const mem = newRam();
    mem.fill(0, 16 * MiB, 0xaa);
    bootCpuState(mem, mode, { entry: 0x7c00 });
    const ranges = reservedBootRanges(mode);
    const bytes = mem.slice(0, 0x100000);
    for (let i = 0; i < bytes.length; i++) {
      if (bytes[i] !== 0xaa && !ranges.some((r) => i >= r.start && i < r.end)) {
        assert.unreachable(`${mode} mode wrote 0x${i.toString(16)} outside its reserved ranges`);
      }
    }
  }
});

test('cpu-modes: entries and stacks the mode cannot reach are refused', () => {
  const mem = newRam();
  assert.throws(() => realModeState({ entry: 0x100000 }), /real-mode entry 0x100000/);
  assert.throws(() => realModeState({ entry: 0x7c00, stack: 0x10000 }), /stack/);
  assert.throws(() => protectedModeState(mem, { entry: 2 ** 32 }), /protected-mode entry/);
  assert.throws(() => longModeState(mem, { entry: -1 }), /long-mode entry/);
  assert.throws(() => longModeState(mem, { entry: 1.5 }), /long-mode entry/);
});

test.run();
