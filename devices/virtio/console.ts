// devices/virtio/console.ts — virtio-console with one port (virtio 1.x, 5.3 "Console Device"), Linux's hvc0.
//
// Without VIRTIO_CONSOLE_F_MULTIPORT there are two queues: receiveq (0, device → driver: host input goes into the
// driver's writable buffers) and transmitq (1, driver → device: the guest's output, written to a CharOut). Offered
// features: SIZE when the machine gives a terminal size (cols/rows in config space; `resize()` updates them and
// signals a configuration change), and EMERG_WRITE (a write to `emerg_wr` outputs one byte even before the queues
// are set up — Linux's early virtio console uses it).
//
// Host input is bounded like the 16550's: `receive(bytes)` puts as much as the driver's receive buffers hold and
// returns how many bytes it took; the caller (src/chardev's InputPump) keeps the rest and offers it again. When the
// driver adds receive buffers, `onInputSpace` is called so the pump can retry at once instead of on its timer.
//
// State: cols/rows (guest-visible, may change at run time) live in the vmstate record; everything else is in guest
// memory (the queues) or configuration.
import { u16, type Descriptor, type StateOf } from '../../cpr/vmstate/vmstate.js';
import type { CharOut } from '../../src/bus/types.js';
import { ByteRing, type ByteRingInit } from '../../src/chardev/byte-ring.js';
import { forEachSegment, serveQueue, VirtqueueError } from './queue.js';
import {
  VIRTIO_ID_CONSOLE,
  readConfigImage,
  type VirtioBackend,
  type VirtioBackendRegistration,
  type VirtioContext,
} from './types.js';

// ---- feature bits (5.3.3) ----------------------------------------------------------------------------------------
export const VIRTIO_CONSOLE_F_SIZE = 0n; // cols and rows are valid
export const VIRTIO_CONSOLE_F_MULTIPORT = 1n; // several ports and a control queue (not offered)
export const VIRTIO_CONSOLE_F_EMERG_WRITE = 2n; // emerg_wr writes a byte

// ---- configuration space (struct virtio_console_config, 5.3.4) ---------------------------------------------------
export const CONSOLE_CFG_COLS = 0; // le16
export const CONSOLE_CFG_ROWS = 2; // le16
export const CONSOLE_CFG_MAX_NR_PORTS = 4; // le32 (MULTIPORT)
export const CONSOLE_CFG_EMERG_WR = 8; // le32, write-only: the low byte is output
export const VIRTIO_CONSOLE_CONFIG_SIZE = 12;

export const CONSOLE_RECEIVEQ = 0;
export const CONSOLE_TRANSMITQ = 1;
export const CONSOLE_QUEUE_SIZE = 128;
/** Bytes of one transmit chain handed to the CharOut per write (a chain may be longer: it is sent in pieces). */
const TX_PIECE = 64 << 10;

export const virtioConsoleState = {
  name: 'virtio-console',
  version: 1,
  minVersion: 1,
  fields: [
    u16('cols'), // terminal size reported with VIRTIO_CONSOLE_F_SIZE
    u16('rows'),
  ],
} as const satisfies Descriptor;

export type VirtioConsoleState = StateOf<typeof virtioConsoleState>;

export interface VirtioConsoleOptions {
  /** Where the guest's output goes. */
  readonly out: CharOut;
  /** Offer VIRTIO_CONSOLE_F_SIZE with this initial size (and allow resize()). */
  readonly size?: { readonly cols: number; readonly rows: number };
  /** The driver added receive buffers: pending host input can be offered again now (InputPump.retry). */
  readonly onInputSpace?: () => void;
}

export class VirtioConsole implements VirtioBackend {
  readonly deviceType = VIRTIO_ID_CONSOLE;
  readonly queueMaxSizes = [CONSOLE_QUEUE_SIZE, CONSOLE_QUEUE_SIZE] as const;
  readonly deviceFeatures: bigint;
  readonly configSize = VIRTIO_CONSOLE_CONFIG_SIZE;
  private readonly config = new Uint8Array(VIRTIO_CONSOLE_CONFIG_SIZE);
  private context: VirtioContext | null = null;

  constructor(
    private readonly state: VirtioConsoleState,
    private readonly options: VirtioConsoleOptions,
  ) {
    this.deviceFeatures = (1n << VIRTIO_CONSOLE_F_EMERG_WRITE) | (options.size ? 1n << VIRTIO_CONSOLE_F_SIZE : 0n);
  }

  readConfig(offset: number, size: 1 | 2 | 4): number {
    const v = new DataView(this.config.buffer);
    v.setUint16(CONSOLE_CFG_COLS, this.state.cols, true);
    v.setUint16(CONSOLE_CFG_ROWS, this.state.rows, true);
    v.setUint32(CONSOLE_CFG_MAX_NR_PORTS, 1, true);
    v.setUint32(CONSOLE_CFG_EMERG_WR, 0, true); // write-only: reads 0
    return readConfigImage(this.config, offset, size);
  }

  writeConfig(offset: number, _size: 1 | 2 | 4, value: number): void {
    // emerg_wr: "the driver writes a character" — output the low byte (any access width that starts there).
    if (offset === CONSOLE_CFG_EMERG_WR) this.options.out.write(Uint8Array.of(value & 0xff));
  }

  activate(context: VirtioContext): void {
    this.context = context;
  }

  reset(): void {
    this.context = null;
  }

  /** Power-on state: the terminal size offered at creation (none: 0 × 0); a device reset keeps the size. */
  powerOn(): void {
    this.state.cols = this.options.size?.cols ?? 0;
    this.state.rows = this.options.size?.rows ?? 0;
  }

  notify(index: number): void {
    const context = this.context;
    if (!context) return;
    if (index === CONSOLE_TRANSMITQ) this.transmit(context);
    else if (index === CONSOLE_RECEIVEQ) this.options.onInputSpace?.();
  }

  /** The terminal changed size (only with the SIZE feature offered): update config space and tell the driver. */
  resize(cols: number, rows: number): void {
    if (!this.options.size) return;
    this.state.cols = cols & 0xffff;
    this.state.rows = rows & 0xffff;
    this.context?.configChanged();
  }

  /**
   * Host input (main thread): copies as many bytes as the driver's receive buffers hold and returns how many it
   * took (0 before the driver is ready or while it has no buffers). Never throws for guest errors.
   */
  receive(bytes: Uint8Array): number {
    const context = this.context;
    if (!context || bytes.length === 0) return 0;
    const queue = context.queue(CONSOLE_RECEIVEQ);
    let taken = 0;
    let pushed = 0;
    try {
      while (taken < bytes.length) {
        const chain = queue.pop();
        if (!chain) break;
        const n = queue.writeTo(chain, 0, bytes.subarray(taken));
        queue.push(chain, n);
        pushed++;
        taken += n;
      }
    } catch (e) {
      if (!(e instanceof VirtqueueError)) throw e;
      context.fail(e.message);
      return taken;
    }
    if (pushed > 0 && queue.needsInterrupt()) context.interrupt(CONSOLE_RECEIVEQ);
    return taken;
  }

  private transmit(context: VirtioContext): void {
    const memory = context.memory;
    const out = this.options.out;
    serveQueue(context, CONSOLE_TRANSMITQ, (chain) => {
      for (let offset = 0; offset < chain.readableBytes; offset += TX_PIECE) {
        const piece = new Uint8Array(Math.min(TX_PIECE, chain.readableBytes - offset));
        forEachSegment(chain.readable, offset, piece.length, (gpa, n, at) => piece.set(memory.slice(gpa, n), at));
        out.write(piece);
      }
      return 0; // nothing is written into a transmit buffer
    });
  }
}

/** The back-end part of a virtio console spec: the chardev output goes to, and the ring host input comes through. */
export interface VirtioConsoleSpec {
  readonly type: 'console';
  readonly output: string;
  readonly input: ByteRingInit;
}

/** -device virtconsole,chardev=… (with virtio-serial-pci): receive and transmit queues, one port. */
export const virtioConsoleBackend: VirtioBackendRegistration<VirtioConsoleSpec, VirtioConsoleState> = {
  type: 'console',
  pciName: 'virtio-serial-pci',
  state: virtioConsoleState,
  queues: 2,
  create: (state, env, spec, id) => {
    // Host input reaches the I/O thread through a ring the main thread fills (src/chardev/byte-ring.ts); it goes into
    // the receive queue as far as the driver's buffers allow, and the rest waits for the driver to add more.
    const ring = ByteRing.attach(spec.input);
    const drain = () => {
      for (let bytes = ring.peek(); bytes.length > 0; bytes = ring.peek()) {
        const taken = backend.receive(bytes);
        ring.consume(taken);
        if (taken < bytes.length) break;
      }
    };
    const backend = new VirtioConsole(state, { out: env.output(spec.output), onInputSpace: drain });
    return { backend, watches: [{ name: `${id}/input`, fd: ring.fd, kind: 'eventfd', group: id, ready: drain }] };
  },
};
