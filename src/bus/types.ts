// What a device model sees of the machine. Devices import only this (and cpr/vmstate/vmstate): never kvm/.

/** Width of one guest access in bytes. MMIO accesses of 8 bytes are split into two 4-byte accesses by the bus. */
export type AccessSize = 1 | 2 | 4 | 8;

/**
 * Handles guest reads and writes to a register window. `offset` is relative to the window's base. Values are
 * zero-extended to the access size; the bus masks what a handler returns. Handlers run on whichever thread took
 * the exit (a vCPU thread, or the main thread for QMP/tests), always under the machine lock.
 */
export interface IoHandler {
  read(offset: number, size: AccessSize): number;
  write(offset: number, size: AccessSize, value: number): void;
}

export type AddressSpace = 'pio' | 'mmio';

/** A register window a device claims on a bus. */
export interface IoRegion {
  readonly name: string;
  readonly space: AddressSpace;
  readonly base: number;
  readonly length: number;
  readonly handler: IoHandler;
}

/**
 * An interrupt line into the interrupt controller. `set(true)` raises a level-triggered line (it stays raised
 * until `set(false)`); edge-triggered ISA devices call `pulse()`. Calling from any thread is allowed.
 */
export interface IrqLine {
  set(level: boolean): void;
  pulse(): void;
}

/** What a device may ask of the machine as a whole. Safe to call from any thread; takes effect asynchronously. */
export interface MachineControl {
  /** End the VM and make tsvmm exit with `status` (isa-debug-exit). */
  exit(status: number, reason: string): void;
  /** A guest-requested reset (i8042 0xFE, triple fault): resets or ends the VM depending on -no-reboot. */
  reset(reason: string): void;
  /** A guest-requested power-off (ACPI S5). */
  powerOff(reason: string): void;
  /** A guest-requested suspend to RAM (ACPI S3): the VM stops, RAM kept, until a wake-up (QMP system_wakeup). */
  suspend(reason: string): void;
  /**
   * A device's wake-up event (the RTC alarm): wakes a suspended VM if the guest enabled that event (ACPI PM1_EN
   * RTC_EN); ignored while the VM runs, as QEMU's qemu_system_wakeup_request does. Only the main thread runs devices
   * while the VM is suspended, so elsewhere this may do nothing.
   */
  wakeEvent(source: WakeEventSource): void;
}

/** What can wake a suspended machine besides the host (QMP system_wakeup, the power button). */
export type WakeEventSource = 'rtc';

/**
 * Why the machine woke the guest: `powerButton` also sets PWRBTN_STS, as a button press wakes real hardware; `rtc`
 * (the RTC alarm, a wake-up event the guest enables with RTC_EN) sets RTC_STS.
 */
export type WakeReason = 'user' | 'powerButton' | 'rtc';

/** A byte sink for a device's output (serial TX, debugcon). Writes never throw; an absent reader drops bytes. */
export interface CharOut {
  write(bytes: Uint8Array): void;
}

/** Host time as devices see it (injected, so tests can drive time by hand). */
export interface HostClock {
  /** Wall-clock time (CLOCK_REALTIME) in nanoseconds. */
  realtimeNs(): bigint;
  /** Monotonic time (CLOCK_MONOTONIC) in nanoseconds: for intervals and timer deadlines. */
  monotonicNs(): bigint;
}
