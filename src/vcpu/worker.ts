// A vCPU thread: builds this thread's view of the machine (RAM, devices over the shared state arena, buses), runs
// the KVM_RUN loop, and reports how it ended. One per vCPU; started by src/vcpu/threads.ts.
import { parentPort, workerData, receiveMessageOnPort, type MessagePort } from 'node:worker_threads';
import { SIGNAL_INIT_POSTED, SIGNAL_LOADED, type VcpuThreadData } from './threads.js';
import { gettid, setThreadName } from '../sys/libc.js';
import { Vcpu } from '../../kvm/vcpu.js';
import { exitReasonName } from '../../kvm/run.js';
import * as K from '../../kvm/bindings/constants.js';
import { StateArena } from '../../cpr/vmstate/vmstate.js';
import { GuestRam } from '../memory/guest-ram.js';
import { PioBus, MmioBus } from '../bus/bus.js';
import { MachineLock } from '../sync/lock.js';
import { instantiate } from '../runtime/device-table.js';
import { Doorbell } from '../runtime/doorbell.js';
import { errnoName } from '../sys/errno.js';
import { VcpuControl } from './control.js';
import { runLoop, type LoopEnd } from './loop.js';
import { formatFailure, formatShutdown } from './failure.js';
import { makeRecord } from '../../cpr/vmstate/vmstate.js';
import { vcpuStateDescriptor, vcpuStateToRecord, type VcpuRecord } from '../../cpr/kvm-state/vcpu.js';
import type { VcpuEvent, VcpuThreadInit } from './messages.js';
import type { Regs, Sregs } from '../../kvm/bindings/types.js';
import { MachineRequests } from '../runtime/machine-control.js';
import { threadDeviceEnvironment } from '../runtime/thread-environment.js';
import { hex } from '../util/hex.js';

// Started early (before the VM exists, so this thread's start-up overlaps the main thread's set-up), the thread
// waits here, blocking, for its init message (src/vcpu/threads.ts).
function receiveInit(): VcpuThreadInit {
  const word = new Int32Array((workerData as VcpuThreadData).signal);
  // Every module (koffi's native code included) is loaded by now: the thread may be ended safely.
  Atomics.store(word, SIGNAL_LOADED, 1);
  Atomics.notify(word, SIGNAL_LOADED);
  for (;;) {
    const received = receiveMessageOnPort(parentPort as unknown as MessagePort);
    if (received) return received.message as VcpuThreadInit;
    Atomics.wait(word, SIGNAL_INIT_POSTED, 0);
  }
}
const init = receiveInit();
const post = (event: VcpuEvent) => parentPort!.postMessage(event);

const control = new VcpuControl(init.vcpuCount, init.control);
const lock = new MachineLock(init.lock);
const doorbell = new Doorbell(init.doorbell);
const ram = new GuestRam(init.ram);
const vcpu = Vcpu.attach(init.vcpuFd, init.vcpuId, init.mmapSize, init.features);
const id = init.vcpuId;

// A device's request to end or reset the machine: park every vCPU at its next exit (this one right after the
// current handler returns), then tell the main thread, which kicks the others and does the work.
const machine = new MachineRequests(id, (request) => {
  control.requestPause();
  post(request);
});

const arena = new StateArena(init.arena);
const { env, closeOutputs } = threadDeviceEnvironment(init, {
  who: `vCPU ${id}`,
  arena,
  memory: ram,
  doorbell,
  machine,
});
const pio = new PioBus();
const mmio = new MmioBus();
for (const entry of init.devices) {
  for (const region of instantiate(entry, arena, env).regions) (region.space === 'pio' ? pio : mmio).add(region);
}

/** The vCPU's registers for a report, if it still answers. */
function readRegisters(): { regs: Regs | null; sregs: Sregs | null } {
  try {
    return { regs: vcpu.getRegs(), sregs: vcpu.getSregs() };
  } catch {
    return { regs: null, sregs: null };
  }
}

function report(title: string, details: string[] = []): string {
  const { regs, sregs } = readRegisters();
  return formatFailure(title, details, regs, sregs, ram);
}

/** A triple fault's report: the state at the fault, unless KVM has re-initialised the vCPU on its way out (SVM). */
function shutdownReport(title: string): string {
  const { regs, sregs } = readRegisters();
  return formatShutdown(title, regs, sregs, ram);
}

const who = `vCPU ${id}`;

/** Turns how the loop ended into an event for the main thread; every event first asks all vCPUs to park. */
function eventFor(end: Exclude<LoopEnd, { kind: 'stopped' }>): VcpuEvent {
  control.requestPause();
  switch (end.kind) {
    case 'shutdown':
      // A triple fault. The main thread resets the machine, or ends it when -no-reboot says so.
      return {
        type: 'failure',
        vcpu: id,
        kind: 'triple-fault',
        report: shutdownReport(
          `${who}: triple fault (KVM_EXIT_SHUTDOWN): the guest hit an exception it could not handle`,
        ),
      };
    case 'system-event':
      if (end.type === K.KVM_SYSTEM_EVENT_RESET) return { type: 'reset', vcpu: id, reason: 'system event: reset' };
      if (end.type === K.KVM_SYSTEM_EVENT_SHUTDOWN)
        return { type: 'power-off', vcpu: id, reason: 'system event: shutdown' };
      return {
        type: 'failure',
        vcpu: id,
        kind: 'unexpected-exit',
        report: report(`${who}: unexpected system event type ${end.type}`),
      };
    case 'failed': {
      const run = vcpu.run;
      const details: string[] = [];
      let title: string;
      if (end.exit === 'internal-error') {
        const sub = run.internal.suberror;
        title = `${who}: KVM internal error (KVM_EXIT_INTERNAL_ERROR, suberror ${sub}: ${INTERNAL_ERRORS[sub] ?? 'unknown'})`;
        const data = run.internal.data;
        if (data.length) details.push(`data: ${data.map((d) => hex(d)).join(' ')}`);
      } else if (end.exit === 'fail-entry') {
        title = `${who}: VM entry failed (KVM_EXIT_FAIL_ENTRY, hardware reason 0x${run.failEntry.hardwareEntryFailureReason.toString(16)}, cpu ${run.failEntry.cpu})`;
      } else {
        title = `${who}: unexpected exit ${exitReasonName(end.reason)} (${end.reason})`;
      }
      return { type: 'failure', vcpu: id, kind: end.exit, report: report(title, details) };
    }
    case 'run-error':
      return {
        type: 'failure',
        vcpu: id,
        kind: 'vmm-error',
        report: report(`${who}: KVM_RUN failed: ${errnoName(end.errno)} (errno ${end.errno})`),
      };
    case 'device-error': {
      const e = end.error as Error;
      return {
        type: 'failure',
        vcpu: id,
        kind: 'vmm-error',
        report: report(`${who}: a device model failed: ${e?.stack ?? String(e)}`),
      };
    }
  }
}

const INTERNAL_ERRORS: Record<number, string> = {
  [K.KVM_INTERNAL_ERROR_EMULATION]: 'emulation failure: KVM could not emulate the instruction',
  [K.KVM_INTERNAL_ERROR_SIMUL_EX]: 'exception while delivering an exception',
  [K.KVM_INTERNAL_ERROR_DELIVERY_EV]: 'unexpected exit while delivering an event',
  [K.KVM_INTERNAL_ERROR_UNEXPECTED_EXIT_REASON]: 'unexpected hardware exit reason',
};

// A checkpoint asks each parked vCPU to save its own state: in parallel, on the thread it last ran on.
const stateRecord = makeRecord(vcpuStateDescriptor, init.stateRecord) as VcpuRecord;
const whileParked = () => {
  if (!control.captureWanted(id)) return;
  try {
    vcpuStateToRecord(vcpu.getState(), stateRecord);
    control.captured(id, true);
  } catch {
    control.captured(id, false); // the main thread reads the state itself instead
  }
};

// The capture path runs cold otherwise (~2.5 ms instead of ~0.5 ms on its first use, inside a guest's pause): run it
// a few times now, on the not-yet-running vCPU, when this machine will use it (several vCPUs; see Machine.pause).
if (init.warmCapture) {
  for (let i = 0; i < 10; i++) vcpuStateToRecord(vcpu.getState(), stateRecord);
}

setThreadName(`CPU ${id}/KVM`); // QEMU's name: ps and /proc tell the vCPU threads apart
control.announce(id, gettid());
// Run until the machine stops. After an event the loop parks at once; the main thread either ends the machine or
// (after a reset) resumes us, and the loop goes on running the guest.
for (;;) {
  const end = runLoop({ vcpu, control, lock, pio, mmio, whileParked });
  if (end.kind === 'stopped') break;
  post(eventFor(end));
}

control.exited(id);
// A bundled thread keeps V8's compiled code for the next start (src/vcpu/thread-loader.ts).
(globalThis as { __tsvmmSaveCodeCache?: () => void }).__tsvmmSaveCodeCache?.();
closeOutputs();
ram.release();
vcpu.close();
