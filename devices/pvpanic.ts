// devices/pvpanic.ts — QEMU's pvpanic ISA device (`-device pvpanic[,ioport=N]`): one I/O port through which the
// guest says it panicked (QEMU docs/specs/pvpanic.rst, ACPI id QEMU0001).
//
//   read   the events the device recognises (QEMU 7.2's isa pvpanic: PANICKED | CRASH_LOADED); the guest should
//          ignore other bits. Linux's pvpanic driver reads this once and from then on only sends what is offered.
//   write  the event: bit 0 (PANICKED) — the host handles it: tsvmm ends with ExitStatus.guestPanic (126);
//          bit 1 (CRASH_LOADED) — the guest handles it (it is going into its kdump kernel): noted, the guest runs on.
//          As in QEMU, PANICKED wins when both are set, and unknown bits are ignored.
//
// The port is one byte wide (QEMU's region is 1 byte with max_access_size 1; the bus splits wider accesses, so the
// byte at the port is all the device sees). The device has no interrupt and no timers.
import { ExitStatus } from '../src/util/exit-status.js';
import { bool, u8, clearRecord, type Descriptor, type StateOf } from '../cpr/vmstate/vmstate.js';
import type { AccessSize, IoHandler, MachineControl } from '../src/bus/types.js';
import { pioRegion, singleRecordDevice } from './registration.js';

/** QEMU's default port (the `ioport` property). */
export const PVPANIC_DEFAULT_IOPORT = 0x505;
/** Bytes the device claims. */
export const PVPANIC_IO_LENGTH = 1;

/** Event bit 0: a panic happened and the host should handle it (Linux include/uapi/misc/pvpanic.h). */
export const PVPANIC_PANICKED = 1 << 0;
/** Event bit 1: a panic happened and the guest handles it itself (kdump); the host only records it. */
export const PVPANIC_CRASH_LOADED = 1 << 1;
/** What a read returns: QEMU 7.2's default `events` property for the ISA device. */
export const PVPANIC_SUPPORTED_EVENTS = PVPANIC_PANICKED | PVPANIC_CRASH_LOADED;

/** What the device remembers: the guest's last write, and whether it announced a crash kernel since power-on. */
export const pvpanicState = {
  name: 'pvpanic',
  version: 1,
  minVersion: 1,
  fields: [
    u8('lastEvent'), // the last byte written (0: none, or a write of 0)
    bool('crashLoaded'), // a CRASH_LOADED event was written: the guest went into its kdump kernel
  ],
} as const satisfies Descriptor;

export type PvpanicState = StateOf<typeof pvpanicState>;

export class Pvpanic implements IoHandler {
  /** `log`: one-line notices (the machine's; a CRASH_LOADED event is reported there, as QEMU's GUEST_CRASHLOADED). */
  constructor(
    readonly state: PvpanicState,
    private readonly machine: MachineControl,
    private readonly log?: (line: string) => void,
  ) {}

  read(_offset: number, _size: AccessSize): number {
    return PVPANIC_SUPPORTED_EVENTS;
  }

  write(_offset: number, _size: AccessSize, value: number): void {
    const event = value & 0xff;
    this.state.lastEvent = event;
    if (event & PVPANIC_PANICKED) {
      this.machine.exit(ExitStatus.guestPanic, `guest panicked (pvpanic: guest wrote 0x${event.toString(16)})`);
      return;
    }
    // QEMU emits GUEST_CRASHLOADED and lets the guest run on into its crash kernel: note it, change nothing else.
    if (event & PVPANIC_CRASH_LOADED) {
      this.state.crashLoaded = true;
      this.log?.('guest panicked and is running its crash kernel (pvpanic: crash loaded)');
    }
  }

  /** Nothing to re-drive: the port has no interrupt. */
  restored(): void {}

  /** Power-on: no event seen. */
  reset(): void {
    clearRecord(this.state);
  }
}

/** The device table's spec: the port. */
export interface PvpanicSpec {
  readonly kind: 'pvpanic';
  readonly id: string;
  readonly port: number;
}

/** Present unless turned off (the command line decides: -device pvpanic, -machine pvpanic=off, acpi=off). */
export const pvpanicDevice = singleRecordDevice({
  kind: 'pvpanic',
  descriptor: pvpanicState,
  plan: ({ config }: { config: { pvpanic: { ioport: number } | null } }): PvpanicSpec[] =>
    config.pvpanic ? [{ kind: 'pvpanic', id: 'pvpanic', port: config.pvpanic.ioport }] : [],
  create: (state, env, spec: PvpanicSpec) => {
    const dev = new Pvpanic(state, env.machine, env.log);
    return {
      regions: [pioRegion(spec.id, spec.port, PVPANIC_IO_LENGTH, dev)],
      reset: () => dev.reset(),
      restored: () => dev.restored(),
    };
  },
});
