// The I/O thread: builds its own view of the machine over the shared arena — like a vCPU thread (src/vcpu/worker.ts)
// — and runs the epoll loop over the devices' watches: queue-notification eventfds, host fds the back ends read,
// and the control eventfd. Handlers run under the machine lock.
import { parentPort, workerData } from 'node:worker_threads';
import { gettid, setThreadName } from '../sys/libc.js';
import { StateArena } from '../../cpr/vmstate/vmstate.js';
import { GuestRam } from '../memory/guest-ram.js';
import { MachineLock } from '../sync/lock.js';
import { instantiate, type MachineDevice } from '../runtime/device-table.js';
import { Doorbell } from '../runtime/doorbell.js';
import { MachineRequests } from '../runtime/machine-control.js';
import { threadDeviceEnvironment } from '../runtime/thread-environment.js';
import type { IoWatch } from '../bus/pci-types.js';
import { IoRequest, IoThreadControl } from './control.js';
import { runIoLoop } from './loop.js';
import type { IoThreadEvent, IoThreadInit } from './messages.js';

const init = workerData as IoThreadInit;
const postIoEvent = (event: IoThreadEvent) => parentPort!.postMessage(event);

const control = new IoThreadControl(init.controlFd, init.control);
const lock = new MachineLock(init.lock);
const doorbell = new Doorbell(init.doorbell);
const ram = new GuestRam(init.ram);
const arena = new StateArena(init.arena);

// A device's request of the machine goes to the main thread as it is: the main thread stops the vCPUs if it must.
const machine = new MachineRequests(-1, postIoEvent);

const { env, closeOutputs } = threadDeviceEnvironment(init, {
  who: 'I/O thread',
  arena,
  memory: ram,
  doorbell,
  machine,
  ioLock: {
    lock: () => lock.lock(),
    unlock: () => lock.unlock(),
    // Any request but Run (a pause, or stop) means: finish what is safe to finish and get back to the loop.
    parkRequested: () => control.request !== IoRequest.Run,
  },
});

/** The I/O work a device asks for (MachineDevice.ioWatches, optional). */
const watchesOf = (d: MachineDevice): readonly IoWatch[] =>
  (d as MachineDevice & { ioWatches?: () => readonly IoWatch[] }).ioWatches?.() ?? [];

const watches: IoWatch[] = [];
for (const entry of init.devices) watches.push(...watchesOf(instantiate(entry, arena, env)));

setThreadName('tsvmm I/O');
control.announce(gettid());
try {
  runIoLoop({
    control,
    lock,
    watches,
    onError: (watch, error) =>
      postIoEvent({
        type: 'failure',
        vcpu: -1,
        kind: 'vmm-error',
        report: `I/O thread: ${watch.name} failed: ${(error as Error)?.stack ?? error}`,
      }),
  });
} finally {
  closeOutputs();
  ram.release();
  control.exited();
}
