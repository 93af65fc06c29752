// The prototype's vCPU thread (bench/exits/placement.ts): KVM_RUN until the guest writes isa-debug-exit, with every
// port exit either handled here under the machine lock (`local`) or forwarded to the main thread (`forward-*`).
import { parentPort, workerData } from 'node:worker_threads';
import { Vcpu } from '../../kvm/vcpu.js';
import * as K from '../../kvm/bindings/constants.js';
import { Errno } from '../../src/sys/errno.js';
import { StateArena } from '../../cpr/vmstate/vmstate.js';
import { Debugcon, debugconState } from '../../devices/debugcon.js';
import { openCharOut } from '../../src/chardev/char-out.js';
import { hostClock } from '../../src/runtime/clock.js';
import { PioBus, pioWindow } from '../../src/bus/bus.js';
import type { AccessSize } from '../../src/bus/types.js';
import { MachineLock } from '../../src/sync/lock.js';
import { Channel, type PlacementInit, type PlacementResult } from './placement-channel.js';

const DEBUG_EXIT_PORT = 0xf4;
const DEBUGCON_PORT = 0xe9;

const init = workerData as PlacementInit;
const vcpu = Vcpu.attach(init.vcpuFd, 0, init.mmapSize, init.features);
const run = vcpu.run;
const io = run.io;
const lock = new MachineLock(init.lock);
const channel = new Channel(init.channel);
const forward = init.mode !== 'local';
const spin = init.mode === 'forward-spin';

// The local mode's device instance: this thread's view of the shared record, as a tsvmm vCPU thread builds it.
const pio = new PioBus();
const arena = new StateArena(init.arena);
const debugcon = new Debugcon(arena.record(debugconState, init.stateOffset), {
  out: openCharOut(init.output),
  clock: hostClock,
});
pio.add(pioWindow('debugcon', DEBUGCON_PORT, 1, debugcon));

let count = 0;
let firstMs = 0;
let lastMs = 0;
let ioExits = 0;
let seq = 0;

loop: for (;;) {
  const r = vcpu.runRaw();
  if (r < 0) {
    if (r === -Errno.EINTR || r === -Errno.EAGAIN) continue;
    throw new Error(`KVM_RUN failed: errno ${-r}`);
  }
  switch (run.exitReason) {
    case K.KVM_EXIT_IO: {
      const port = io.port;
      const size = io.size as AccessSize;
      const out = io.direction === K.KVM_EXIT_IO_OUT;
      if (out && port === DEBUG_EXIT_PORT) break loop;
      ioExits++;
      if (out && port === init.loopPort) {
        const t = performance.now();
        if (count++ === 0) firstMs = t;
        lastMs = t;
      }
      const n = io.count;
      if (forward) {
        for (let i = 0; i < n; i++) {
          const v = channel.call(++seq, port, size, io.direction, out ? io.valueAt(i) : 0, spin);
          if (!out) io.setValueAt(i, v);
        }
      } else {
        lock.lock();
        try {
          if (out) for (let i = 0; i < n; i++) pio.write(port, size, io.valueAt(i));
          else for (let i = 0; i < n; i++) io.setValueAt(i, pio.read(port, size));
        } finally {
          lock.unlock();
        }
      }
      break;
    }
    case K.KVM_EXIT_INTR:
      break;
    default:
      throw new Error(`unexpected exit reason ${run.exitReason}`);
  }
}

if (forward) channel.stop();
vcpu.close();
const result: PlacementResult = { mode: init.mode, count, firstMs, lastMs, ioExits };
parentPort!.postMessage(result);
