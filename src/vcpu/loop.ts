// The vCPU run loop: enter the guest, dispatch the exit, repeat. It runs on the vCPU's own thread; device handlers
// run right here under the machine lock (no hop to the main thread: that hop costs ~47 µs, the whole exit ~8 µs).
import { Errno } from '../sys/errno.js';
import * as K from '../../kvm/bindings/constants.js';
import { exitReasonName } from '../../kvm/run.js';
import type { Vcpu } from '../../kvm/vcpu.js';
import type { PioBus, MmioBus } from '../bus/bus.js';
import type { AccessSize } from '../bus/types.js';
import type { MachineLock } from '../sync/lock.js';
import type { VcpuControl } from './control.js';

export interface LoopContext {
  vcpu: Vcpu;
  control: VcpuControl;
  lock: MachineLock;
  pio: PioBus;
  mmio: MmioBus;
  /** Runs while the vCPU is parked, its state complete, whenever it wakes unresumed (saves it if asked). */
  whileParked?: () => void;
}

/** Why the loop stopped of its own accord (anything else — a pause or stop request — is handled inside). */
export type LoopEnd =
  | { kind: 'stopped' }
  | { kind: 'shutdown' }
  | { kind: 'system-event'; type: number }
  | { kind: 'failed'; exit: 'internal-error' | 'fail-entry' | 'unexpected-exit'; reason: number }
  | { kind: 'run-error'; errno: number }
  | { kind: 'device-error'; error: unknown };

export function runLoop(ctx: LoopContext): LoopEnd {
  const { vcpu, control, lock, pio, mmio } = ctx;
  const run = vcpu.run;
  const io = run.io;
  const mm = run.mmio;
  for (;;) {
    // A pause or stop request: enter KVM_RUN once more with immediate_exit set. KVM first finishes the instruction
    // whose exit we handled last (an IN stores its result, RIP moves past an OUT; KVM API doc, "immediate_exit")
    // and then returns EINTR without running the guest, so a parked vCPU's state is complete for any reader.
    if (control.interrupted) run.immediateExit = 1;
    control.enteringGuest(vcpu.id);
    const result = vcpu.runRaw();
    control.leftGuest(vcpu.id, result < 0 ? -1 : run.exitReason);
    if (result < 0) {
      // EINTR: a kick (immediate_exit or the signal); EAGAIN: try again.
      if (result !== -Errno.EINTR && result !== -Errno.EAGAIN) return { kind: 'run-error', errno: -result };
      run.immediateExit = 0;
      if (control.interrupted) {
        if (!control.park(vcpu.id, ctx.whileParked)) return { kind: 'stopped' };
      }
      continue;
    }
    switch (run.exitReason) {
      case K.KVM_EXIT_IO: {
        const port = io.port;
        const size = io.size as AccessSize;
        const count = io.count;
        lock.lock();
        try {
          if (io.direction === K.KVM_EXIT_IO_OUT) {
            for (let i = 0; i < count; i++) pio.write(port, size, io.valueAt(i));
          } else {
            for (let i = 0; i < count; i++) io.setValueAt(i, pio.read(port, size));
          }
        } catch (error) {
          return { kind: 'device-error', error };
        } finally {
          lock.unlock();
        }
        break;
      }
      case K.KVM_EXIT_MMIO: {
        const address = Number(mm.physAddr);
        const len = mm.len as AccessSize;
        lock.lock();
        try {
          if (mm.isWrite) mmio.write(address, len, mm.value);
          else mm.value = BigInt(mmio.read(address, len));
        } catch (error) {
          return { kind: 'device-error', error };
        } finally {
          lock.unlock();
        }
        break;
      }
      case K.KVM_EXIT_INTR:
        run.immediateExit = 0;
        break;
      case K.KVM_EXIT_SHUTDOWN:
        return { kind: 'shutdown' };
      case K.KVM_EXIT_SYSTEM_EVENT:
        return { kind: 'system-event', type: run.systemEvent.type };
      case K.KVM_EXIT_INTERNAL_ERROR:
        return { kind: 'failed', exit: 'internal-error', reason: K.KVM_EXIT_INTERNAL_ERROR };
      case K.KVM_EXIT_FAIL_ENTRY:
        return { kind: 'failed', exit: 'fail-entry', reason: K.KVM_EXIT_FAIL_ENTRY };
      default:
        // HLT without an irqchip, debug, hypercall…: nothing tsvmm asked for.
        return { kind: 'failed', exit: 'unexpected-exit', reason: run.exitReason };
    }
  }
}

export { exitReasonName };
