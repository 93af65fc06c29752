// A restore is all-or-nothing: a checkpoint this VM cannot take is refused either before anything changes (an MSR
// KVM does not list) or, when KVM refuses a value only as it is set, with everything it had set put back. Either
// way the in-kernel chips, every vCPU's registers and guest RAM are exactly what they were, and the same VM still
// takes the good checkpoint afterwards. Needs /dev/kvm (the rig where there is none).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { testIf } from '../../test/support/skip.js';
import { waitFor } from '../../test/support/hang-guard.js';
import { kvmMissing } from '../../kvm/testing/test-guest.js';
import { buildGuest, toolchainUnavailable, COUNTER_STATE_ADDR } from '../../examples/guests/build.js';
import { Machine } from '../../src/machine/machine.js';
import { parseRunArgs } from '../../src/cli/args.js';
import { machineConfigFromArgs } from '../../src/cli/config.js';
import { KVM_IRQCHIP_IOAPIC, KVM_IRQCHIP_PIC_MASTER, KVM_IRQCHIP_PIC_SLAVE } from '../../kvm/bindings/constants.js';
import type { MsrEntry } from '../../kvm/bindings/types.js';
import { CheckpointError, openRam, readCheckpoint, writeCheckpoint, type Section } from '../file/checkpoint-file.js';
import { decodeInto, encodeRecord } from '../vmstate/stream.js';
import { newRecord } from '../vmstate/vmstate.js';
import { recordToVcpuState, vcpuStateDescriptor, vcpuStateToRecord } from '../machine-state/index.js';
import { loadFromFile, saveToFile } from './reboot.js';

const skip = kvmMissing() ?? (await toolchainUnavailable());
const dir = mkdtempSync(join(tmpdir(), 'tsvmm-restore-atomic-'));
const MSR_IA32_TSC = 0x10;
const MSR_IA32_CR_PAT = 0x277;
/** A PAT whose every entry is memory type 2, which the architecture reserves: KVM refuses it in KVM_SET_MSRS. */
const RESERVED_PAT = 0x0202020202020202n;

/** Two vCPUs, private RAM (so the checkpoint carries RAM, and loading it is a change this test can see). */
async function counterMachine(): Promise<Machine> {
  const guest = await buildGuest('counter');
  const config = machineConfigFromArgs(
    parseRunArgs(['-m', '16M', '-kernel', guest.path, '-serial', 'null', '-smp', '2']),
  );
  return Machine.create(config, { log: () => {} });
}

/** The good checkpoint, saved from a counter guest that has ticked, and the count it had. */
async function goodCheckpoint(): Promise<{ path: string; count: bigint }> {
  const machine = await counterMachine();
  machine.start();
  try {
    await waitFor(() => machine.guestMemory.readU64(COUNTER_STATE_ADDR) > 10n, 'the counter guest ticks');
    const path = join(dir, 'good.cpr');
    await saveToFile(machine, path, 'skip-shared');
    return { path, count: machine.guestMemory.readU64(COUNTER_STATE_ADDR) };
  } finally {
    await machine.finish(0);
  }
}

/** A copy of `good` with vCPU 1's MSRs changed by `change`, its checksum right (written by the real writer). */
function withVcpu1Msrs(good: string, name: string, change: (msrs: MsrEntry[]) => MsrEntry[]): string {
  const checkpoint = readCheckpoint(good);
  const sections: Section[] = checkpoint.sections.map((s) => {
    if (s.kind !== 'vcpu' || s.instance !== 1) return s;
    const record = newRecord(vcpuStateDescriptor, false);
    decodeInto(vcpuStateDescriptor, s.payload, s.version, record);
    const state = recordToVcpuState(record);
    const changed = vcpuStateToRecord({ ...state, msrs: change([...state.msrs]) });
    return { ...s, payload: encodeRecord(vcpuStateDescriptor, changed) };
  });
  const ram = openRam(checkpoint);
  const path = join(dir, name);
  try {
    writeCheckpoint(path, {
      sections,
      ram: {
        size: checkpoint.ram!.length,
        read(offset, length) {
          const out = new Uint8Array(length);
          ram.read(offset, length, out);
          return out;
        },
      },
    });
  } finally {
    ram.close();
  }
  return path;
}

const json = (value: unknown) =>
  JSON.stringify(value, (_k, v) =>
    typeof v === 'bigint' ? `${v}n` : v instanceof Uint8Array ? Buffer.from(v).toString('hex') : v,
  );

/**
 * What a refused restore must leave as it was: the PICs and the IOAPIC, each vCPU's whole state (its TSC aside,
 * which runs on), and a hash of guest RAM.
 */
function observe(machine: Machine): Record<string, string> {
  const parts = machine.parts();
  const seen: Record<string, string> = {};
  for (const chip of [KVM_IRQCHIP_PIC_MASTER, KVM_IRQCHIP_PIC_SLAVE, KVM_IRQCHIP_IOAPIC])
    seen[`irqchip ${chip}`] = json(parts.vm.getIrqchip(chip));
  for (const [i, vcpu] of parts.vcpus.entries()) {
    const { msrs, ...rest } = vcpu.getState();
    for (const [key, value] of Object.entries(rest)) seen[`vcpu ${i} ${key}`] = json(value);
    seen[`vcpu ${i} msrs`] = json(msrs.filter((m) => m.index !== MSR_IA32_TSC));
  }
  const hash = createHash('sha256');
  for (const r of parts.ram.regions) hash.update(parts.ram.ram.slice(r.gpa, r.size));
  seen.ram = hash.digest('hex');
  return seen;
}

/** `bad` is refused with `message`; nothing observable changed; then the good file loads and the guest goes on. */
async function refusedThenGoodLoads(bad: string, message: RegExp): Promise<void> {
  const { path: good, count } = saved!;
  const machine = await counterMachine();
  machine.start({ paused: true });
  try {
    const before = observe(machine);
    assert.throws(
      () => loadFromFile(machine, bad),
      (e: Error) => e instanceof CheckpointError && message.test(e.message) && !e.message.includes('\n'),
      `expected a refusal matching ${message}`,
    );
    assert.equal(observe(machine), before, 'irqchips, vCPU state and guest RAM as before the refused restore');
    assert.is(machine.runState, 'prelaunch', 'the VM still waits for a checkpoint');
    loadFromFile(machine, good);
    assert.is(machine.runState, 'running');
    await waitFor(() => machine.guestMemory.readU64(COUNTER_STATE_ADDR) > count, 'the restored guest counts on');
  } finally {
    await machine.finish(0);
  }
}

let saved: { path: string; count: bigint } | undefined;

testIf(
  test,
  skip,
  'restore: an MSR KVM does not list (0xdeadbeef on vCPU 1) is refused before anything changes; the good file still loads',
  async () => {
    saved ??= await goodCheckpoint();
    const bad = withVcpu1Msrs(saved.path, 'msr-deadbeef.cpr', (msrs) => [...msrs, { index: 0xdeadbeef, data: 0n }]);
    await refusedThenGoodLoads(
      bad,
      /^checkpoint state is not valid: vcpu 1: the state has MSR 0xdeadbeef, which this KVM does not list \(KVM_GET_MSR_INDEX_LIST\)$/,
    );
  },
);

testIf(
  test,
  skip,
  'restore: a value KVM refuses only as it sets it (a reserved PAT on vCPU 1, after the chips and vCPU 0) is undone — the VM is as before, the good file still loads',
  async () => {
    saved ??= await goodCheckpoint();
    const bad = withVcpu1Msrs(saved.path, 'pat-reserved.cpr', (msrs) => {
      const pat = msrs.findIndex((m) => m.index === MSR_IA32_CR_PAT);
      assert.ok(pat >= 0, 'vCPU 1 saves IA32_PAT (KVM lists it in msrs_to_save)');
      msrs[pat] = { index: MSR_IA32_CR_PAT, data: RESERVED_PAT };
      return msrs;
    });
    await refusedThenGoodLoads(
      bad,
      /^the restore was refused part-way \(vcpu 1: KVM refused MSR 0x277\); the VM is back in its state before the restore$/,
    );
  },
);

test.after(() => rmSync(dir, { recursive: true, force: true }));
test.run();
