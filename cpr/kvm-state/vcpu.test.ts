// The vCPU descriptor: a real vCPU's state survives state → record → state exactly, a fresh VM's vCPU given the
// round-tripped state carries on where the old one stopped, edge values and full arrays round-trip, bad sizes and
// corrupt counts are refused. How long one conversion takes (part of the cpr-transfer pause) is a figure of
// bench/cpr-parts, not a test: a test must pass on a slow or loaded machine.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { testIf } from '../../test/support/skip.js';
import { kvmMissing, RealModeGuest } from '../../kvm/testing/test-guest.js';
import { Errno } from '../../src/sys/errno.js';
import * as K from '../../kvm/bindings/ioctls.js';
import { recordBytes, layoutOf } from '../vmstate/vmstate.js';
import type { VcpuState } from '../../kvm/bindings/types.js';
import {
  vcpuStateDescriptor,
  vcpuStateToRecord,
  recordToVcpuState,
  MAX_CPUID_ENTRIES,
  MAX_MSRS,
  MAX_XCRS,
  MAX_XSAVE_BYTES,
  LAPIC_BYTES,
  FPR_BYTES,
  XMM_BYTES,
} from './vcpu.js';

const noKvm = kvmMissing();

/** Real-mode loop: ebx counts up and every pass writes it to port 0x80 (one exit per pass). */
const COUNTER_PORT = 0x80;
const COUNTER_LOOP = [
  0xba,
  COUNTER_PORT,
  0x00, // mov dx, 0x80
  0x66,
  0x43, // loop: inc ebx
  0x66,
  0x89,
  0xd8, //       mov eax, ebx
  0x66,
  0xef, //       out dx, eax
  0xeb,
  0xf7, //       jmp loop
];

/** Runs to the next port write and returns the value written. */
function nextCount(g: RealModeGuest): number {
  const run = g.runToExit();
  assert.is(run.exitReason, K.KVM_EXIT_IO, `exit reason ${run.exitReason}`);
  assert.is(run.io.port, COUNTER_PORT);
  return run.io.value;
}

/** Lets KVM finish the OUT it handed to us, as the vCPU loop does before parking: state is then consistent. */
function completePendingIo(g: RealModeGuest): void {
  g.vcpu.run.immediateExit = 1;
  const r = g.vcpu.runRaw();
  g.vcpu.run.immediateExit = 0;
  assert.ok(r === -Errno.EINTR || r === 0, `KVM_RUN with immediate_exit returned ${r}`);
}

/** Paths where two plain-data values differ, for a readable failure. */
function differences(a: unknown, b: unknown, path = ''): string[] {
  if (a instanceof Uint8Array && b instanceof Uint8Array) {
    if (a.length !== b.length) return [`${path}: ${a.length} vs ${b.length} bytes`];
    const at = a.findIndex((x, i) => x !== b[i]);
    return at < 0 ? [] : [`${path}: bytes differ from ${at}`];
  }
  if (typeof a === 'object' && a !== null && typeof b === 'object' && b !== null) {
    const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
    return [...keys].flatMap((k) => differences((a as any)[k], (b as any)[k], `${path}.${k}`));
  }
  return a === b ? [] : [`${path}: ${String(a)} vs ${String(b)}`];
}

/**
 * The MSR TSC (0x10) counts on its own between two reads, and KVM's TSC synchronisation may keep the new VM's own
 * count for a TSC the host writes: leave it out when comparing two vCPUs. Everything else saved must match exactly
 * (Hyper-V's time counters, which KVM lists too, are not saved: kvm/vcpu.ts msrSaved).
 */
const withoutTsc = (s: VcpuState): VcpuState => ({ ...s, msrs: s.msrs.filter((e) => e.index !== 0x10) });

testIf(test, noKvm, 'vcpu record: a real vCPU state (in-kernel irqchip, after running) round-trips exactly', () => {
  const g = new RealModeGuest(COUNTER_LOOP, { irqchip: true });
  try {
    for (let i = 1; i <= 3; i++) assert.is(nextCount(g), i);
    completePendingIo(g);
    const state = g.vcpu.getState();
    assert.ok(state.lapic !== null && state.events !== null && state.msrs.length > 0, 'a full state to test with');
    const back = recordToVcpuState(vcpuStateToRecord(state));
    assert.equal(differences(back, state), []);
    assert.equal(back, state);
  } finally {
    g.close();
  }
});

testIf(
  test,
  noKvm,
  'vcpu record: a fresh VM given the round-tripped state continues the guest loop where it stopped',
  () => {
    const a = new RealModeGuest(COUNTER_LOOP, { irqchip: true });
    let saved: VcpuState;
    try {
      for (let i = 1; i <= 5; i++) assert.is(nextCount(a), i);
      completePendingIo(a);
      saved = recordToVcpuState(vcpuStateToRecord(a.vcpu.getState()));
    } finally {
      a.close();
    }
    const b = new RealModeGuest(COUNTER_LOOP, { irqchip: true });
    try {
      assert.is(b.vcpu.getRegs().rbx, 0n, 'the new vCPU starts from its own reset state');
      b.vcpu.setState(saved);
      assert.equal(differences(withoutTsc(b.vcpu.getState()), withoutTsc(saved)), []);
      // The counter lives only in ebx: the guest goes on from 6, not from 1.
      assert.equal([nextCount(b), nextCount(b), nextCount(b)], [6, 7, 8]);
    } finally {
      b.close();
    }
  },
);

// ---- without KVM: edge values, capacities, corrupt records ------------------------------------------------------

const U64_MAX = 0xffff_ffff_ffff_ffffn;
const U32_MAX = 0xffff_ffff;
const bytesOf = (n: number, seed: number) => Uint8Array.from({ length: n }, (_, i) => (i * 131 + seed) & 0xff);

function segment(v: number, base: bigint) {
  return {
    base,
    limit: U32_MAX,
    selector: 0xffff,
    type: 15,
    present: v,
    dpl: 3,
    db: v,
    s: v,
    l: v,
    g: v,
    avl: v,
    unusable: v,
  };
}

/** A state with every field at an extreme and every array full. */
function fullState(): VcpuState {
  const reg = U64_MAX;
  return {
    cpuid: Array.from({ length: MAX_CPUID_ENTRIES }, (_, i) => ({
      function: U32_MAX - i,
      index: i,
      flags: 7,
      eax: U32_MAX,
      ebx: 0,
      ecx: 0x80000000,
      edx: i,
    })),
    tscKhz: U32_MAX,
    mpState: 4,
    regs: {
      rax: reg,
      rbx: 0n,
      rcx: 1n,
      rdx: 1n << 63n,
      rsi: reg - 1n,
      rdi: 2n,
      rsp: 3n,
      rbp: 4n,
      r8: 5n,
      r9: 6n,
      r10: 7n,
      r11: 8n,
      r12: 9n,
      r13: 10n,
      r14: 11n,
      r15: reg,
      rip: 0xffff_ffff_8000_0000n,
      rflags: 0x3f7fd7n,
    },
    sregs: {
      cs: segment(1, reg),
      ds: segment(0, 0n),
      es: segment(1, 1n),
      fs: segment(0, 1n << 47n),
      gs: segment(1, reg),
      ss: segment(0, 0n),
      tr: segment(1, 0x1000n),
      ldt: segment(0, 0n),
      gdt: { base: reg, limit: 0xffff },
      idt: { base: 0n, limit: 0 },
      cr0: reg,
      cr2: 0xdead_beefn,
      cr3: 1n << 51n,
      cr4: 0x3fffffn,
      cr8: 15n,
      efer: 0xd01n,
      apicBase: 0xfee00d00n,
      interruptBitmap: [reg, 0n, 1n, 1n << 63n],
    },
    fpu: {
      fpr: bytesOf(FPR_BYTES, 1),
      fcw: 0xffff,
      fsw: 0x8000,
      ftwx: 0xff,
      lastOpcode: 0x7ff,
      lastIp: reg,
      lastDp: 1n,
      xmm: bytesOf(XMM_BYTES, 2),
      mxcsr: U32_MAX,
    },
    xsave: bytesOf(MAX_XSAVE_BYTES, 3),
    xcrs: Array.from({ length: MAX_XCRS }, (_, i) => ({ xcr: i, value: reg - BigInt(i) })),
    debugregs: { db: [reg, 1n, 2n, 3n], dr6: 0xffff0ff0n, dr7: 0x400n, flags: reg },
    lapic: bytesOf(LAPIC_BYTES, 4),
    msrs: Array.from({ length: MAX_MSRS }, (_, i) => ({ index: U32_MAX - i, data: reg - BigInt(i) })),
    events: {
      exception: { injected: 1, nr: 255, hasErrorCode: 1, pending: 1, errorCode: U32_MAX },
      interrupt: { injected: 1, nr: 255, soft: 1, shadow: 3 },
      nmi: { injected: 1, pending: 255, masked: 1 },
      sipiVector: U32_MAX,
      flags: U32_MAX,
      smi: { smm: 1, pending: 1, smmInsideNmi: 1, latchedInit: 255 },
      tripleFault: { pending: 1 },
      exceptionHasPayload: 1,
      exceptionPayload: reg,
    },
  };
}

/** A state from a KVM without the optional parts: every nullable part null, empty lists. */
function bareState(): VcpuState {
  const s = fullState();
  return {
    ...s,
    cpuid: [],
    tscKhz: null,
    xsave: null,
    xcrs: null,
    debugregs: null,
    lapic: null,
    msrs: [],
    events: null,
  };
}

test('vcpu record: full arrays and extreme values round-trip exactly', () => {
  const s = fullState();
  const back = recordToVcpuState(vcpuStateToRecord(s));
  assert.equal(differences(back, s), []);
  assert.equal(back, s);
});

test('vcpu record: absent parts (no XSAVE, XCRs, debug registers, LAPIC, events, TSC rate) stay null', () => {
  const s = bareState();
  const r = vcpuStateToRecord(s);
  assert.is(r.xsavePresent, false);
  assert.is(r.xsaveLength, 0);
  assert.is(r.lapicPresent, false);
  assert.equal(recordToVcpuState(r), s);
  // Present but empty is not the same as absent.
  const emptyXcrs = { ...s, xcrs: [] };
  assert.equal(recordToVcpuState(vcpuStateToRecord(emptyXcrs)).xcrs, []);
});

test('vcpu record: a reused record holds only the new state (no entries of the old one past the counts)', () => {
  const r = vcpuStateToRecord(fullState());
  const small = {
    ...bareState(),
    cpuid: [{ function: 1, index: 0, flags: 0, eax: 1, ebx: 2, ecx: 3, edx: 4 }],
    msrs: [{ index: 0x10, data: 5n }],
  };
  assert.is(vcpuStateToRecord(small, r), r);
  assert.equal(recordToVcpuState(r), small);
  const fresh = vcpuStateToRecord(small);
  assert.equal(recordBytes(r), recordBytes(fresh), 'the reused record is byte-identical to a fresh one');
});

test('vcpu record: the state shares no memory with the record', () => {
  const r = vcpuStateToRecord(fullState());
  const s = recordToVcpuState(r);
  s.xsave![0] ^= 0xff;
  s.lapic![0] ^= 0xff;
  s.fpu.xmm[0] ^= 0xff;
  assert.equal(recordToVcpuState(r), fullState());
});

test('vcpu record: arrays beyond their capacity are refused, naming what overflowed', () => {
  const s = fullState();
  assert.throws(() => vcpuStateToRecord({ ...s, cpuid: [...s.cpuid, s.cpuid[0]] }), /257 CPUID entries/);
  assert.throws(() => vcpuStateToRecord({ ...s, msrs: [...s.msrs, s.msrs[0]] }), /513 MSRs/);
  assert.throws(() => vcpuStateToRecord({ ...s, xcrs: [...s.xcrs!, s.xcrs![0]] }), /17 XCRs/);
  assert.throws(() => vcpuStateToRecord({ ...s, xsave: new Uint8Array(MAX_XSAVE_BYTES + 1) }), /XSAVE/);
  assert.throws(() => vcpuStateToRecord({ ...s, lapic: new Uint8Array(LAPIC_BYTES - 1) }), /LAPIC page of 1023 bytes/);
  assert.throws(() => vcpuStateToRecord({ ...s, fpu: { ...s.fpu, xmm: new Uint8Array(16) } }), /fpu.xmm/);
});

test('vcpu record: corrupt counts and lengths in a record are refused, not read past the arrays', () => {
  const corrupt = (edit: (r: ReturnType<typeof vcpuStateToRecord>) => void) => {
    const r = vcpuStateToRecord(fullState());
    edit(r);
    return () => recordToVcpuState(r);
  };
  assert.throws(
    corrupt((r) => {
      r.cpuidCount = MAX_CPUID_ENTRIES + 1;
    }),
    /CPUID entries: count 257/,
  );
  assert.throws(
    corrupt((r) => {
      r.msrCount = U32_MAX;
    }),
    /MSRs: count 4294967295/,
  );
  assert.throws(
    corrupt((r) => {
      r.xsaveLength = MAX_XSAVE_BYTES + 4;
    }),
    /XSAVE area: count/,
  );
  assert.throws(
    corrupt((r) => {
      r.xsavePresent = false;
    }),
    /XSAVE area is marked absent but has length 16384/,
  );
  assert.throws(
    corrupt((r) => {
      r.lapicLength = 16;
    }),
    /LAPIC page of 16 bytes/,
  );
  assert.throws(
    corrupt((r) => {
      r.xcrsCount = MAX_XCRS + 1;
    }),
    /XCRs: count 17/,
  );
});

test('vcpu record: every field of the descriptor is named and the layout fits one record', () => {
  const layout = layoutOf(vcpuStateDescriptor);
  for (const name of [
    'cpuid',
    'tscKhz',
    'mpState',
    'regs',
    'sregs',
    'fpu',
    'xsave',
    'xcrs',
    'debugregs',
    'lapic',
    'msrs',
    'events',
  ]) {
    assert.ok(layout.byName.has(name), `field ${name}`);
  }
  const sregs = layout.byName.get('sregs')!.layout!;
  assert.ok(sregs.byName.get('cs')!.layout!.byName.has('selector'), 'segments are nested records');
  assert.ok(layout.byName.get('events')!.layout!.byName.get('exception')!.layout!.byName.has('errorCode'));
  assert.ok(layout.size < 64 * 1024, `record of ${layout.size} bytes`);
});

test.run();
