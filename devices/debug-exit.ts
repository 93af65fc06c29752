// devices/debug-exit.ts — QEMU's isa-debug-exit: a guest write of v ends the VM with status (v << 1) | 1.
//
// The value is masked to the access width (outb → 8 bits, outw → 16, outl → 32), and the status is computed without
// 32-bit overflow (v * 2 + 1, up to 2^33 - 1): the process exit code the machine derives from it is, as with QEMU's
// exit(), its low 8 bits. Statuses from this device are always odd; tsvmm's own exit statuses are even.
// Reads return 0 (QEMU's device has no read handler).
import { u8, u32, clearRecord, type Descriptor, type StateOf } from '../cpr/vmstate/vmstate.js';
import type { AccessSize, IoHandler, MachineControl } from '../src/bus/types.js';
import { pioRegion, singleRecordDevice } from './registration.js';

/** QEMU's defaults: iobase 0xf4, iosize 4 (the window the device claims; any 1-4 byte access inside it counts). */
export const DEBUG_EXIT_IOBASE = 0xf4;
export const DEBUG_EXIT_IOSIZE = 4;

/** The last write, kept for `vmstate dump` and for the exit report. */
export const debugExitState = {
  name: 'isa-debug-exit',
  version: 1,
  minVersion: 1,
  fields: [u32('lastValue'), u8('lastSize')], // lastSize 0: never written
} as const satisfies Descriptor;

export type DebugExitState = StateOf<typeof debugExitState>;

const WIDTH_MASK: Record<number, number> = { 1: 0xff, 2: 0xffff, 4: 0xffffffff, 8: 0xffffffff };

/** The exit status QEMU's isa-debug-exit gives for a write of `value` with `size` bytes. */
export function debugExitStatus(value: number, size: AccessSize): number {
  return ((value & WIDTH_MASK[size]) >>> 0) * 2 + 1;
}

export class DebugExit implements IoHandler {
  constructor(
    readonly state: DebugExitState,
    private readonly machine: MachineControl,
  ) {}

  read(_offset: number, _size: AccessSize): number {
    return 0;
  }

  write(_offset: number, size: AccessSize, value: number): void {
    const v = (value & WIDTH_MASK[size]) >>> 0;
    this.state.lastValue = v;
    this.state.lastSize = size;
    this.machine.exit(
      v * 2 + 1,
      `isa-debug-exit: guest wrote 0x${v.toString(16)} (${size} byte${size === 1 ? '' : 's'})`,
    );
  }

  /** Nothing to re-drive: the port has no interrupt. */
  restored(): void {}

  /** Power-on: never written. */
  reset(): void {
    clearRecord(this.state);
  }
}

/** The device table's spec: where the window sits and how wide it is. */
export interface DebugExitSpec {
  readonly kind: 'debug-exit';
  readonly id: string;
  readonly base: number;
  readonly size: number;
}

/** Present when the command line asks for it (-device isa-debug-exit[,iobase=…,iosize=…]). */
export const debugExitDevice = singleRecordDevice({
  kind: 'debug-exit',
  descriptor: debugExitState,
  plan: ({ config }: { config: { debugExit: { iobase: number; iosize: number } | null } }): DebugExitSpec[] =>
    config.debugExit
      ? [{ kind: 'debug-exit', id: 'debug-exit', base: config.debugExit.iobase, size: config.debugExit.iosize }]
      : [],
  create: (state, env, spec: DebugExitSpec) => {
    const dev = new DebugExit(state, env.machine);
    return {
      regions: [pioRegion(spec.id, spec.base, spec.size, dev)],
      reset: () => dev.reset(),
      restored: () => dev.restored(),
    };
  },
});
