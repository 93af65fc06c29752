// devices/debugcon.ts — QEMU's isa-debugcon: a one-port console (Bochs' "port e9 hack"). Every byte the guest
// writes goes to a CharOut; a read returns the readback value (0xe9 by default), which lets a guest detect the port.
//
// Accesses wider than a byte act as QEMU's byte-only device does: a 2- or 4-byte write emits its bytes in
// little-endian order, a wide read returns the readback value in every byte.
//
// Timestamped output (option `timestamps`): instead of the raw byte, each byte becomes one text line
//
//     <CLOCK_REALTIME in ns, decimal> <the byte as two lower-case hex digits>\n
//     e.g. "1764068000123456789 4f\n"
//
// taken from the injected HostClock when the guest's write is handled (all bytes of one wide access share one
// stamp). A probe outside the VM can then see exactly when the guest executed its last `out` before a pause or
// checkpoint and its first after the resume, on the host's wall clock.
import { u32, clearRecord, type Descriptor, type StateOf } from '../cpr/vmstate/vmstate.js';
import type { AccessSize, CharOut, HostClock, IoHandler } from '../src/bus/types.js';
import type { CharSpec } from '../src/chardev/spec.js';
import { type OpenChardev, pioRegion, singleRecordDevice } from './registration.js';

/** QEMU's default iobase and readback. */
export const DEBUGCON_IOBASE = 0xe9;
export const DEBUGCON_READBACK = 0xe9;
export const DEBUGCON_IO_LENGTH = 1;

/** Nothing about the port itself is mutable; the byte counter is kept so `vmstate dump` shows the guest's progress. */
export const debugconState = {
  name: 'isa-debugcon',
  version: 1,
  minVersion: 1,
  fields: [u32('bytesWritten')], // wraps at 2^32
} as const satisfies Descriptor;

export type DebugconState = StateOf<typeof debugconState>;

export interface DebugconOptions {
  out: CharOut;
  /** What a read returns (QEMU's `readback` property). */
  readback?: number;
  /** Write one timestamped text line per byte instead of the byte (see the file comment). Needs `clock`. */
  timestamps?: boolean;
  clock?: HostClock;
}

/** Longest line: 20 digits of a u64, a space, two hex digits, a newline. */
const MAX_LINE = 24;
const HEX = new TextEncoder().encode('0123456789abcdef');
const SPACE = 0x20;
const NEWLINE = 0x0a;

export class Debugcon implements IoHandler {
  private readonly out: CharOut;
  private readonly readback: number;
  private readonly clock: HostClock | null;
  /** Scratch for one access's output, and fixed-size views of it per access width: no allocation per write. */
  private readonly scratch = new Uint8Array(4 * MAX_LINE);
  private readonly rawViews: Uint8Array[];

  constructor(
    readonly state: DebugconState,
    options: DebugconOptions,
  ) {
    this.out = options.out;
    this.readback = (options.readback ?? DEBUGCON_READBACK) & 0xff;
    if (options.timestamps && !options.clock) throw new Error('isa-debugcon: timestamps need a clock');
    this.clock = options.timestamps ? options.clock! : null;
    this.rawViews = [0, 1, 2, 3, 4].map((n) => this.scratch.subarray(0, n));
  }

  read(_offset: number, size: AccessSize): number {
    if (size === 1) return this.readback;
    if (size === 2) return this.readback * 0x0101;
    return this.readback * 0x01010101; // a plain multiply stays an unsigned number
  }

  write(_offset: number, size: AccessSize, value: number): void {
    const n = size > 4 ? 4 : size;
    this.state.bytesWritten = (this.state.bytesWritten + n) >>> 0;
    if (this.clock === null) {
      const bytes = this.rawViews[n];
      for (let i = 0; i < n; i++) bytes[i] = (value >>> (8 * i)) & 0xff;
      this.out.write(bytes);
      return;
    }
    const stamp = this.clock.realtimeNs().toString();
    let at = 0;
    for (let i = 0; i < n; i++) at = this.formatLine(at, stamp, (value >>> (8 * i)) & 0xff);
    this.out.write(this.scratch.subarray(0, at));
  }

  private formatLine(at: number, stamp: string, byte: number): number {
    const line = this.scratch;
    const digits = Math.min(stamp.length, MAX_LINE - 4);
    for (let i = 0; i < digits; i++) line[at++] = stamp.charCodeAt(i); // ASCII digits
    line[at++] = SPACE;
    line[at++] = HEX[byte >> 4];
    line[at++] = HEX[byte & 0xf];
    line[at++] = NEWLINE;
    return at;
  }

  /** Nothing to re-drive: the port has no interrupt. */
  restored(): void {}

  /** Power-on: nothing written. */
  reset(): void {
    clearRecord(this.state);
  }
}

/** The device table's spec: the port, the chardev its bytes go to, and the output format. */
export interface DebugconSpec {
  readonly kind: 'debugcon';
  readonly id: string;
  readonly base: number;
  readonly output: string;
  readonly timestamps: boolean;
}

/** What the machine plan says about debug consoles (-debugcon, -device isa-debugcon). */
export interface DebugconPlan {
  readonly config: { readonly debugcon: readonly { output: CharSpec; iobase: number; timestamps: boolean }[] };
  readonly openChardev: OpenChardev;
}

/** One per -debugcon / -device isa-debugcon, in command-line order. */
export const debugconDevice = singleRecordDevice({
  kind: 'debugcon',
  descriptor: debugconState,
  async plan({ config, openChardev }: DebugconPlan): Promise<DebugconSpec[]> {
    const specs: DebugconSpec[] = [];
    for (const [i, d] of config.debugcon.entries()) {
      const id = `debugcon${i}`;
      specs.push({
        kind: 'debugcon',
        id,
        base: d.iobase,
        output: await openChardev(id, d.output),
        timestamps: d.timestamps,
      });
    }
    return specs;
  },
  create: (state, env, spec: DebugconSpec) => {
    const dev = new Debugcon(state, { out: env.output(spec.output), timestamps: spec.timestamps, clock: env.clock });
    return {
      regions: [pioRegion(spec.id, spec.base, DEBUGCON_IO_LENGTH, dev)],
      reset: () => dev.reset(),
      restored: () => dev.restored(),
    };
  },
});
