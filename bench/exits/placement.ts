// Where device handlers run: a small prototype VMM (not tsvmm's machine) that runs the same outloop image two ways,
// so the only difference between the numbers is where the handler runs.
//
//   local          the vCPU worker that took the exit runs the handler itself, under a MachineLock, over a device
//                  whose state is a SharedArrayBuffer record: tsvmm's design (src/vcpu/loop.ts), rebuilt here.
//   forward-async  the worker forwards every port exit to the main thread and sleeps in Atomics.wait; the main
//                  thread wakes from Atomics.waitAsync (its event loop stays free), runs the handler, answers and
//                  notifies the worker.
//   forward-sync   as forward-async, but the main thread waits with a blocking Atomics.wait, which freezes its
//                  event loop (no timers, no input, no QMP meanwhile).
//   forward-spin   both sides poll the mailbox instead of sleeping: the floor of a thread hop without futex
//                  wake-ups, bought with a second core kept 100% busy.
//
// The device is the real isa-debugcon (devices/debugcon.ts) on port 0xe9 with a null backend, as `-debugcon null`
// gives tsvmm; the VM is set up as tsvmm sets it up (in-kernel irqchip and PIT, 64 MiB of anonymous RAM, host
// CPUID, real mode at the load address). The worker stamps every loop-port exit with performance.now(); the rate is
// (count - 1) / (last - first).
//
// Run as a child process, one run per process: `node dist/bench/exits/placement.js MODE IMAGE PORT`; prints one
// JSON line. bench/exits.ts calls runPlacement().
import { Worker } from 'node:worker_threads';
import { readFileSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Kvm } from '../../kvm/kvm.js';
import { cpuidFor } from '../../kvm/cpuid.js';
import { KVM_PIT_SPEAKER_DUMMY } from '../../kvm/bindings/constants.js';
import * as libc from '../../src/sys/libc.js';
import { realModeState } from '../../src/boot/cpu-modes.js';
import { openCharBackend } from '../../src/chardev/index.js';
import { StateArena } from '../../cpr/vmstate/vmstate.js';
import { Debugcon, debugconState } from '../../devices/debugcon.js';
import { hostClock } from '../../src/runtime/clock.js';
import { PioBus, pioWindow } from '../../src/bus/bus.js';
import type { AccessSize } from '../../src/bus/types.js';
import { MachineLock } from '../../src/sync/lock.js';
import { runTimed, expectStatus } from '../lib/spawn.js';
import { Channel, type PlacementInit, type PlacementResult } from './placement-channel.js';

export type PlacementMode = 'local' | 'forward-async' | 'forward-sync' | 'forward-spin';
export const PLACEMENT_MODES: readonly PlacementMode[] = ['local', 'forward-async', 'forward-sync', 'forward-spin'];

const RAM_SIZE = 64 * 1024 * 1024;
const IDENTITY_MAP_ADDR = 0xfeffc000;
const TSS_ADDR = 0xfeffd000;
const LOAD_ADDRESS = 0x7c00;
const DEBUGCON_PORT = 0xe9;

/** Runs one prototype run in a fresh process and returns what its worker measured. */
export async function runPlacement(mode: PlacementMode, image: string, port: number): Promise<PlacementResult> {
  const script = fileURLToPath(import.meta.url);
  const run = expectStatus(
    await runTimed(process.execPath, [script, mode, image, String(port)]),
    0,
    `placement prototype (${mode})`,
  );
  return JSON.parse(run.stdout.trim().split('\n').pop()!) as PlacementResult;
}

/** The main thread's half: the VM, the device (for the forward modes), and the forwarding server. */
async function main(mode: PlacementMode, imagePath: string, loopPort: number): Promise<void> {
  const image = readFileSync(imagePath);
  const kvm = Kvm.open();
  const vm = kvm.createVm();
  vm.setIdentityMapAddr(IDENTITY_MAP_ADDR);
  vm.setTssAddr(TSS_ADDR);
  vm.createIrqchip();
  vm.createPit2(KVM_PIT_SPEAKER_DUMMY);
  const ram = libc.mmap(
    null,
    RAM_SIZE,
    libc.PROT_READ | libc.PROT_WRITE,
    libc.MAP_PRIVATE | libc.MAP_ANONYMOUS | libc.MAP_NORESERVE,
    -1,
    0,
  );
  vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memorySize: RAM_SIZE, userspaceAddr: ram });
  {
    // A view of the first MiB only for loading; dropped at once (nothing touches RAM through JS afterwards).
    const low = new Uint8Array(libc.view(ram, 0x100000));
    if (LOAD_ADDRESS + image.length > low.length) throw new Error('image does not fit below 1 MiB');
    low.set(image, LOAD_ADDRESS);
  }
  const vcpu = vm.createVcpu(0);
  vcpu.setCpuid2(cpuidFor(kvm.supportedCpuid(), { policy: 'host', vcpuId: 0, vcpuCount: 1 }));
  const boot = realModeState({ entry: LOAD_ADDRESS });
  vcpu.setSregs({ ...vcpu.getSregs(), ...boot.sregs });
  vcpu.setRegs({ ...vcpu.getRegs(), ...boot.regs });

  const backend = await openCharBackend({ kind: 'null' });
  const arena = new StateArena(4096);
  const stateOffset = arena.allocate(debugconState);
  const channel = new Channel();
  const init: PlacementInit = {
    mode,
    vcpuFd: vcpu.fd,
    mmapSize: vcpu.mmapSize,
    features: vm.vcpuFeatures(),
    loopPort,
    arena: arena.buffer,
    stateOffset,
    output: backend.transferable(),
    lock: new MachineLock().buffer,
    channel: channel.buffer,
  };

  // The forward modes' server: the device lives in the main thread, over the same kind of record.
  const pio = new PioBus();
  const dev = new Debugcon(arena.record(debugconState, stateOffset), { out: backend.out, clock: hostClock });
  pio.add(pioWindow('debugcon', DEBUGCON_PORT, 1, dev));
  const serve = (): void => {
    if (channel.direction === 1) pio.write(channel.port, channel.size as AccessSize, channel.value);
    else channel.value = pio.read(channel.port, channel.size as AccessSize);
  };

  const worker = new Worker(new URL('./placement-worker.js', import.meta.url), { workerData: init });
  const result = new Promise<PlacementResult>((resolve, reject) => {
    worker.once('message', resolve);
    worker.once('error', reject);
  });
  // Listened for now: when this thread polls until the worker is done (forward-spin), the worker's message and its
  // exit arrive in one turn, and a listener added after `await result` would miss the exit.
  const exited = new Promise((resolve) => worker.once('exit', resolve));
  if (mode === 'forward-async') {
    // The event loop stays free between exits: each wait is a promise that the worker's notify resolves.
    for (let seen = 0; ; ) {
      const r = Atomics.waitAsync(channel.words, Channel.REQUEST, seen);
      if (r.async) await r.value;
      seen = channel.request;
      if (seen === Channel.STOP) break;
      serve();
      channel.answer(seen);
    }
  } else if (mode === 'forward-sync' || mode === 'forward-spin') {
    // This thread blocks (or polls) between exits until the worker says it is finished.
    for (let seen = 0; ; ) {
      if (mode === 'forward-sync') Atomics.wait(channel.words, Channel.REQUEST, seen);
      else
        while (Atomics.load(channel.words, Channel.REQUEST) === seen) {
          /* poll */
        }
      seen = channel.request;
      if (seen === Channel.STOP) break;
      serve();
      channel.answer(seen);
    }
  }
  const measured = await result;
  await exited;
  vm.close();
  libc.munmap(ram, RAM_SIZE);
  kvm.close();
  await backend.close();
  process.stdout.write(`${JSON.stringify(measured)}\n`);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const [mode, image, port] = process.argv.slice(2);
  if (!PLACEMENT_MODES.includes(mode as PlacementMode) || !image) {
    process.stderr.write(`usage: placement.js ${PLACEMENT_MODES.join('|')} IMAGE PORT\n`);
    process.exit(2);
  }
  await main(mode as PlacementMode, image, Number(port ?? DEBUGCON_PORT));
  process.exit(0);
}
