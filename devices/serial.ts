// devices/serial.ts — a 16550A UART with the register behaviour of QEMU's hw/char/serial.c (PC COM port).
//
// Threading: one Serial16550 instance per thread over one shared state record. Every mutable bit — registers, the
// receive FIFO, pending-interrupt flags, the IRQ line level, the FIFO timeout — lives in the record; instances hold
// only the injected IrqLine/CharOut/HostClock and a scratch byte. All calls happen under the machine lock.
//
// Where each entry point runs:
//   read/write      any thread (the vCPU thread that took the exit)
//   receive         main thread: host input. Bounded: returns how many bytes were taken; the caller keeps the rest
//   pollTimer       main thread: the FIFO character-timeout timer (see below)
//   restored/reset  main thread, after a checkpoint load / on machine reset
//
// Transmit is synchronous: a THR write hands the byte to the CharOut at once (one write(2)), so the transmitter
// FIFO is always empty and is not part of the state; LSR.THRE/TEMT are set again before the write returns, which
// is also what QEMU shows a guest when its backend accepts the byte.
//
// The FIFO character timeout (16550 datasheet: RX data below the trigger level and no FIFO activity for four
// character times → IIR = 0xCC) needs a timer. The device only records a deadline (CLOCK_MONOTONIC ns): after
// calling receive(), the machine asks `pollTimer()` for the deadline and calls `pollTimer()` again once it has
// passed; it returns the next deadline or null. A guest reading IIR also checks the deadline, so a guest that polls
// sees the timeout even if nobody drives the timer.
//
// IRQ: QEMU raises the line whenever an enabled interrupt is pending and ignores MCR.OUT2; that is the default here.
// `out2GatesIrq: true` models a real PC board instead, where OUT2 enables the IRQ driver (and loopback disconnects
// OUT2 from the pin, so no IRQ reaches the PIC in loopback mode).
import {
  u8,
  u16,
  u64,
  bool,
  bytes,
  clearRecord,
  within,
  withHooks,
  type Descriptor,
  type StateOf,
} from '../cpr/vmstate/vmstate.js';
import type { AccessSize, CharOut, HostClock, IoHandler, IrqLine } from '../src/bus/types.js';
import type { CharSpec } from '../src/chardev/spec.js';
import { type OpenChardev, pioRegion, singleRecordDevice } from './registration.js';

// ---- register offsets (from the port base) --------------------------------------------------------------------
export const UART_RBR = 0; // read: receiver buffer (DLAB=0)
export const UART_THR = 0; // write: transmitter holding register (DLAB=0)
export const UART_DLL = 0; // divisor latch low byte (DLAB=1)
export const UART_IER = 1; // interrupt enable (DLAB=0)
export const UART_DLM = 1; // divisor latch high byte (DLAB=1)
export const UART_IIR = 2; // read: interrupt identification
export const UART_FCR = 2; // write: FIFO control
export const UART_LCR = 3; // line control
export const UART_MCR = 4; // modem control
export const UART_LSR = 5; // line status
export const UART_MSR = 6; // modem status
export const UART_SCR = 7; // scratch
/** Number of ports the UART decodes. */
export const SERIAL_IO_LENGTH = 8;

// ---- IER ------------------------------------------------------------------------------------------------------
export const IER_RDI = 0x01; // receiver data available (and character timeout)
export const IER_THRI = 0x02; // transmitter holding register empty
export const IER_RLSI = 0x04; // receiver line status (overrun, parity, framing, break)
export const IER_MSI = 0x08; // modem status change
const IER_MASK = 0x0f; // bits 4-7 read as zero on a 16550A

// ---- IIR ------------------------------------------------------------------------------------------------------
export const IIR_NO_INT = 0x01; // bit 0 set: nothing pending
export const IIR_MSI = 0x00; // modem status (lowest priority)
export const IIR_THRI = 0x02; // THR empty
export const IIR_RDI = 0x04; // received data reached the trigger level
export const IIR_RLSI = 0x06; // receiver line status (highest priority)
export const IIR_CTI = 0x0c; // character timeout (FIFO mode)
export const IIR_ID_MASK = 0x0e; // the identification bits
export const IIR_FIFO_ENABLED = 0xc0; // bits 6-7 set while FCR.FE is set (a 16550A, not a 16550)

// ---- FCR ------------------------------------------------------------------------------------------------------
export const FCR_FE = 0x01; // FIFO enable
export const FCR_RFR = 0x02; // clear the receive FIFO (self-clearing)
export const FCR_XFR = 0x04; // clear the transmit FIFO (self-clearing)
export const FCR_DMS = 0x08; // DMA mode select (stored, no effect)
export const FCR_ITL_MASK = 0xc0; // receive trigger level: 1, 4, 8 or 14 bytes
const FCR_STICKY = FCR_ITL_MASK | FCR_DMS | FCR_FE; // the bits the UART remembers
const TRIGGER_LEVELS = [1, 4, 8, 14] as const;

// ---- LCR ------------------------------------------------------------------------------------------------------
export const LCR_WLS_MASK = 0x03; // word length: 5 + value bits
export const LCR_STB = 0x04; // two stop bits
export const LCR_PEN = 0x08; // parity enable
export const LCR_SBC = 0x40; // set break (ignored: backends carry bytes, not line states)
export const LCR_DLAB = 0x80; // divisor latch access bit

// ---- MCR ------------------------------------------------------------------------------------------------------
export const MCR_DTR = 0x01; // data terminal ready
export const MCR_RTS = 0x02; // request to send
export const MCR_OUT1 = 0x04; // user output 1
export const MCR_OUT2 = 0x08; // user output 2: on PC boards, enables the IRQ driver
export const MCR_LOOP = 0x10; // loopback: TX → RX internally, modem outputs → modem inputs
const MCR_MASK = 0x1f;

// ---- LSR ------------------------------------------------------------------------------------------------------
export const LSR_DR = 0x01; // data ready
export const LSR_OE = 0x02; // overrun error
export const LSR_PE = 0x04; // parity error
export const LSR_FE = 0x08; // framing error
export const LSR_BI = 0x10; // break interrupt
export const LSR_THRE = 0x20; // transmitter holding register empty
export const LSR_TEMT = 0x40; // transmitter empty (THR and shift register)
const LSR_INT_ANY = LSR_OE | LSR_PE | LSR_FE | LSR_BI; // the bits that raise a line-status interrupt

// ---- MSR ------------------------------------------------------------------------------------------------------
export const MSR_DCTS = 0x01; // delta CTS
export const MSR_DDSR = 0x02; // delta DSR
export const MSR_TERI = 0x04; // trailing edge of RI (1 → 0)
export const MSR_DDCD = 0x08; // delta DCD
export const MSR_CTS = 0x10; // clear to send
export const MSR_DSR = 0x20; // data set ready
export const MSR_RI = 0x40; // ring indicator
export const MSR_DCD = 0x80; // data carrier detect
const MSR_ANY_DELTA = 0x0f;
const MSR_INPUTS = 0xf0;
/** What the modem inputs read when not in loopback: a connected, ready peer (QEMU's default for non-tty backends). */
const MSR_EXTERNAL = MSR_DCD | MSR_DSR | MSR_CTS;

export const FIFO_SIZE = 16;
/** The crystal divided by 16: divisor 1 is 115200 baud. */
const BAUD_BASE = 115200;
/** QEMU's rate for a zero divisor. */
const ZERO_DIVISOR_BAUD = 3500;
/** The reset divisor: 9600 baud. */
const RESET_DIVISOR = 12;

/** The PC's four COM ports (QEMU's isa-serial index → iobase, irq). */
export const COM_PORTS = [
  { base: 0x3f8, irq: 4 },
  { base: 0x2f8, irq: 3 },
  { base: 0x3e8, irq: 4 },
  { base: 0x2e8, irq: 3 },
] as const;

/** Everything a checkpoint needs to resume the UART exactly. */
export const serialState = withHooks(
  {
    name: 'serial-16550a',
    version: 1,
    minVersion: 1,
    fields: [
      u8('rbr'), // receive buffer when the FIFO is disabled
      u8('ier'),
      u8('fcr'), // the sticky FCR bits
      u8('lcr'),
      u8('mcr'),
      u8('lsr'),
      u8('msr'), // modem inputs (high nibble) and delta bits (low nibble)
      u8('scr'),
      u16('divisor'),
      u8('rxHead'), // index of the oldest byte in rxFifo
      u8('rxCount'), // bytes in rxFifo
      bytes('rxFifo', FIFO_SIZE), // circular: all 16 bytes are saved
      bool('thrIPending'), // THR-empty interrupt latched (cleared by an IIR read that reports it, or a THR write)
      bool('timeoutIPending'), // character-timeout interrupt latched (cleared by an RBR read)
      bool('timeoutArmed'), // a character-timeout deadline is running
      bool('irqLevel'), // the level we last drove on the IRQ line
      u64('timeoutDeadlineNs'), // CLOCK_MONOTONIC deadline; re-based by restored() in a new process
    ],
  } as const satisfies Descriptor,
  {
    // The FIFO is indexed with these: a head past it would read undefined, a count past it a negative room.
    check(s) {
      within(s.rxHead, FIFO_SIZE - 1, 'rxHead', `the FIFO holds ${FIFO_SIZE} bytes`);
      within(s.rxCount, FIFO_SIZE, 'rxCount', `the FIFO holds ${FIFO_SIZE} bytes`);
    },
  },
);

export type SerialState = StateOf<typeof serialState>;

export interface SerialOptions {
  irq: IrqLine;
  /** Where transmitted bytes go. */
  out: CharOut;
  /** For the FIFO character timeout. */
  clock: HostClock;
  /** Model the PC board's OUT2 gate on the IRQ line (default false: QEMU raises regardless of OUT2). */
  out2GatesIrq?: boolean;
}

export class Serial16550 implements IoHandler {
  private readonly irq: IrqLine;
  private readonly out: CharOut;
  private readonly clock: HostClock;
  private readonly out2GatesIrq: boolean;
  /** Scratch for one transmitted byte: a THR write allocates nothing. */
  private readonly txByte = new Uint8Array(1);

  constructor(
    readonly state: SerialState,
    options: SerialOptions,
  ) {
    this.irq = options.irq;
    this.out = options.out;
    this.clock = options.clock;
    this.out2GatesIrq = options.out2GatesIrq ?? false;
  }

  // ---- guest side ---------------------------------------------------------------------------------------------

  read(offset: number, size: AccessSize): number {
    if (size === 1) return this.readRegister(offset);
    // The UART decodes bytes; a wider access reads consecutive registers, as QEMU's 1-byte-only ops split it.
    let value = 0;
    for (let i = 0; i < Math.min(size, 4); i++) value |= this.readRegister(offset + i) << (8 * i);
    return value >>> 0;
  }

  write(offset: number, size: AccessSize, value: number): void {
    if (size === 1) {
      this.writeRegister(offset, value & 0xff);
      return;
    }
    for (let i = 0; i < Math.min(size, 4); i++) this.writeRegister(offset + i, (value >>> (8 * i)) & 0xff);
  }

  private readRegister(reg: number): number {
    const s = this.state;
    switch (reg) {
      case UART_RBR:
        return s.lcr & LCR_DLAB ? s.divisor & 0xff : this.readRbr();
      case UART_IER:
        return s.lcr & LCR_DLAB ? s.divisor >> 8 : s.ier;
      case UART_IIR: {
        if (s.timeoutArmed) this.pollTimer();
        const id = this.pendingInterrupt();
        // Reading IIR while it reports THR-empty acknowledges that interrupt (datasheet and QEMU).
        if (id === IIR_THRI) {
          s.thrIPending = false;
          this.updateIrq();
        }
        return id | (s.fcr & FCR_FE ? IIR_FIFO_ENABLED : 0);
      }
      case UART_LCR:
        return s.lcr;
      case UART_MCR:
        return s.mcr;
      case UART_LSR: {
        const lsr = s.lsr;
        // Reading LSR clears the error bits, and with them a pending line-status interrupt.
        if (lsr & LSR_INT_ANY) {
          s.lsr = lsr & ~LSR_INT_ANY;
          this.updateIrq();
        }
        return lsr;
      }
      case UART_MSR: {
        const msr = s.msr;
        // Reading MSR clears the delta bits, and with them a pending modem-status interrupt.
        if (msr & MSR_ANY_DELTA) {
          s.msr = msr & MSR_INPUTS;
          this.updateIrq();
        }
        return msr;
      }
      case UART_SCR:
        return s.scr;
      default:
        return 0xff; // beyond the 8 registers (a wide access that ran off the end)
    }
  }

  private readRbr(): number {
    const s = this.state;
    let value: number;
    if (s.fcr & FCR_FE) {
      if (s.rxCount === 0) {
        value = 0;
      } else {
        value = s.rxFifo[s.rxHead];
        s.rxHead = (s.rxHead + 1) % FIFO_SIZE;
        s.rxCount = s.rxCount - 1;
      }
      if (s.rxCount === 0) {
        s.lsr = s.lsr & ~(LSR_DR | LSR_BI);
        s.timeoutArmed = false;
      } else {
        this.armTimeout(); // FIFO activity restarts the four-character timeout
      }
      s.timeoutIPending = false;
    } else {
      value = s.rbr;
      s.lsr = s.lsr & ~(LSR_DR | LSR_BI);
    }
    this.updateIrq();
    return value;
  }

  private writeRegister(reg: number, value: number): void {
    const s = this.state;
    switch (reg) {
      case UART_THR:
        if (s.lcr & LCR_DLAB) s.divisor = (s.divisor & 0xff00) | value;
        else this.transmit(value);
        return;
      case UART_IER:
        if (s.lcr & LCR_DLAB) {
          s.divisor = (s.divisor & 0x00ff) | (value << 8);
        } else {
          const ier = value & IER_MASK;
          const changed = s.ier ^ ier;
          s.ier = ier;
          // Enabling THRI while THR is empty raises the interrupt again even if an IIR read had acknowledged it
          // (not in the datasheet; real parts and Windows rely on it — QEMU does the same).
          if (changed & IER_THRI) s.thrIPending = (ier & IER_THRI) !== 0 && (s.lsr & LSR_THRE) !== 0;
          if (changed) this.updateIrq();
        }
        return;
      case UART_FCR:
        this.writeFcr(value);
        return;
      case UART_LCR:
        s.lcr = value;
        return;
      case UART_MCR: {
        const old = s.mcr;
        s.mcr = value & MCR_MASK;
        if (old !== s.mcr) {
          this.updateModemInputs();
          this.updateIrq(); // OUT2/LOOP may open or close the gate
        }
        return;
      }
      case UART_LSR:
      case UART_MSR:
        return; // read-only (writes are factory test modes on real parts; QEMU ignores them too)
      case UART_SCR:
        s.scr = value;
        return;
      default:
        return;
    }
  }

  private writeFcr(value: number): void {
    const s = this.state;
    // Toggling the enable bit flushes both FIFOs.
    if ((value ^ s.fcr) & FCR_FE) value |= FCR_RFR | FCR_XFR;
    if (value & FCR_RFR) {
      s.rxHead = 0;
      s.rxCount = 0;
      s.lsr = s.lsr & ~(LSR_DR | LSR_BI);
      s.timeoutArmed = false;
      s.timeoutIPending = false;
    }
    if (value & FCR_XFR) {
      // The transmit FIFO is always empty here (synchronous TX); clearing it makes THR empty, as in QEMU.
      s.lsr = s.lsr | LSR_THRE;
      s.thrIPending = true;
    }
    s.fcr = value & FCR_STICKY;
    this.updateIrq();
  }

  private transmit(byte: number): void {
    const s = this.state;
    // THR is full for an instant: the THRE interrupt drops, then rises again once the byte is sent. The line
    // therefore makes a fresh edge per byte, as on hardware and in QEMU (edge-triggered ISA IRQs need it).
    s.thrIPending = false;
    s.lsr = s.lsr & ~(LSR_THRE | LSR_TEMT);
    this.updateIrq();
    if (s.mcr & MCR_LOOP) {
      this.loopbackReceive(byte); // in loopback the byte never reaches the line
    } else {
      this.txByte[0] = byte;
      this.out.write(this.txByte);
    }
    s.lsr = s.lsr | LSR_THRE | LSR_TEMT;
    s.thrIPending = true;
    this.updateIrq();
  }

  /** A byte looped back from THR: unlike host input it can overrun (FIFO full, or RBR not yet read). */
  private loopbackReceive(byte: number): void {
    const s = this.state;
    if (s.fcr & FCR_FE) {
      if (s.rxCount < FIFO_SIZE) this.pushRx(byte);
      else s.lsr = s.lsr | LSR_OE; // overrun does not overwrite FIFO contents
      s.lsr = s.lsr | LSR_DR;
      this.armTimeout();
    } else {
      if (s.lsr & LSR_DR) s.lsr = s.lsr | LSR_OE;
      s.rbr = byte;
      s.lsr = s.lsr | LSR_DR;
    }
  }

  private pushRx(byte: number): void {
    const s = this.state;
    s.rxFifo[(s.rxHead + s.rxCount) % FIFO_SIZE] = byte;
    s.rxCount = s.rxCount + 1;
  }

  /** Modem inputs: the outputs wired back in loopback, the external (always ready) peer otherwise. */
  private updateModemInputs(): void {
    const s = this.state;
    const mcr = s.mcr;
    const inputs =
      mcr & MCR_LOOP
        ? (mcr & MCR_DTR ? MSR_DSR : 0) |
          (mcr & MCR_RTS ? MSR_CTS : 0) |
          (mcr & MCR_OUT1 ? MSR_RI : 0) |
          (mcr & MCR_OUT2 ? MSR_DCD : 0)
        : MSR_EXTERNAL;
    const old = s.msr;
    const changed = (old ^ inputs) & MSR_INPUTS;
    if (changed === 0) return;
    let delta = changed >> 4;
    // TERI reports only the trailing edge of RI (1 → 0).
    if (delta & MSR_TERI && inputs & MSR_RI) delta &= ~MSR_TERI;
    s.msr = inputs | (old & MSR_ANY_DELTA) | delta;
  }

  // ---- interrupts -----------------------------------------------------------------------------------------------

  /** The highest-priority enabled interrupt, as IIR reports it (IIR_NO_INT when none). */
  private pendingInterrupt(): number {
    const s = this.state;
    const ier = s.ier;
    if (ier === 0) return IIR_NO_INT;
    if (ier & IER_RLSI && s.lsr & LSR_INT_ANY) return IIR_RLSI;
    if (ier & IER_RDI) {
      // IER.RDI masks the timeout too: not in the datasheet, observed on hardware (QEMU's note).
      if (s.timeoutIPending) return IIR_CTI;
      if (s.lsr & LSR_DR && (!(s.fcr & FCR_FE) || s.rxCount >= this.triggerLevel())) return IIR_RDI;
    }
    if (ier & IER_THRI && s.thrIPending) return IIR_THRI;
    if (ier & IER_MSI && s.msr & MSR_ANY_DELTA) return IIR_MSI;
    return IIR_NO_INT;
  }

  private lineLevel(): boolean {
    if (this.pendingInterrupt() === IIR_NO_INT) return false;
    if (!this.out2GatesIrq) return true;
    const mcr = this.state.mcr;
    return (mcr & MCR_OUT2) !== 0 && (mcr & MCR_LOOP) === 0;
  }

  private updateIrq(): void {
    const level = this.lineLevel();
    if (level !== this.state.irqLevel) {
      this.state.irqLevel = level;
      this.irq.set(level);
    }
  }

  private triggerLevel(): number {
    return TRIGGER_LEVELS[this.state.fcr >> 6];
  }

  // ---- the character timeout --------------------------------------------------------------------------------

  /** Time to send one frame at the programmed rate and format (start + data + parity + stop bits). */
  charTimeNs(): number {
    const s = this.state;
    const lcr = s.lcr;
    const frameBits = 1 + (lcr & LCR_WLS_MASK) + 5 + (lcr & LCR_PEN ? 1 : 0) + (lcr & LCR_STB ? 2 : 1);
    const baud = s.divisor === 0 ? ZERO_DIVISOR_BAUD : BAUD_BASE / s.divisor;
    return Math.round((1e9 / baud) * frameBits);
  }

  private armTimeout(): void {
    const s = this.state;
    s.timeoutDeadlineNs = this.clock.monotonicNs() + BigInt(4 * this.charTimeNs());
    s.timeoutArmed = true;
  }

  /**
   * Main thread (under the lock): fire the character timeout if its deadline has passed. Returns the deadline at
   * which to call again (CLOCK_MONOTONIC ns), or null when no timeout is running.
   */
  pollTimer(nowNs: bigint = this.clock.monotonicNs()): bigint | null {
    const s = this.state;
    if (!s.timeoutArmed) return null;
    const deadline = s.timeoutDeadlineNs;
    if (nowNs < deadline) return deadline;
    s.timeoutArmed = false;
    if (s.fcr & FCR_FE && s.rxCount > 0) {
      s.timeoutIPending = true;
      this.updateIrq();
    }
    return null;
  }

  // ---- host side ------------------------------------------------------------------------------------------------

  /** How many bytes receive() would take now. */
  canReceive(): number {
    const s = this.state;
    if (s.mcr & MCR_LOOP) return 0; // the receiver listens to the transmitter, not the line
    if (s.fcr & FCR_FE) return FIFO_SIZE - s.rxCount;
    return s.lsr & LSR_DR ? 0 : 1;
  }

  /**
   * Main thread: host input for the guest. Takes as many bytes as fit (the free FIFO space, or one byte into an
   * empty RBR) and returns that count; the caller keeps the rest and offers it again later. Host input therefore
   * never overruns.
   */
  receive(input: Uint8Array): number {
    const s = this.state;
    const n = Math.min(input.length, this.canReceive());
    if (n === 0) return 0;
    if (s.fcr & FCR_FE) {
      for (let i = 0; i < n; i++) this.pushRx(input[i]);
      this.armTimeout();
    } else {
      s.rbr = input[0];
    }
    s.lsr = s.lsr | LSR_DR;
    this.updateIrq();
    return n;
  }

  // ---- lifecycle ------------------------------------------------------------------------------------------------

  /** After a checkpoint load: re-base a running timeout on this process's clock and drive the IRQ line. */
  restored(): void {
    const s = this.state;
    if (s.timeoutArmed) this.armTimeout();
    const level = this.lineLevel();
    s.irqLevel = level;
    this.irq.set(level);
  }

  /**
   * Machine reset: power-on state (QEMU's serial_reset: 9600 8N1, FIFO off, nothing pending, OUT2 set, a ready peer
   * on the line) and a low IRQ line.
   */
  reset(): void {
    const s = this.state;
    clearRecord(s);
    s.lsr = LSR_TEMT | LSR_THRE;
    s.msr = MSR_EXTERNAL;
    s.divisor = RESET_DIVISOR;
    s.mcr = MCR_OUT2;
    this.irq.set(false);
  }
}

/** The device table's spec: the port, the IRQ and the chardev the UART's line goes to. */
export interface SerialSpec {
  readonly kind: 'serial';
  readonly id: string;
  readonly base: number;
  readonly irq: number;
  readonly output: string;
}

/** What the machine plan says about serial ports: -serial, one per COM port. */
export interface SerialPlan {
  readonly config: { readonly serial: readonly CharSpec[] };
  readonly openChardev: OpenChardev;
}

const nsToMs = (deadlineNs: bigint | null, clock: HostClock): number | null =>
  deadlineNs === null ? null : Math.max(0, Number(deadlineNs - clock.monotonicNs()) / 1e6);

/** COM1..COM4 in -serial order; `-serial none` leaves its port out. */
export const serialDevice = singleRecordDevice({
  kind: 'serial',
  descriptor: serialState,
  async plan({ config, openChardev }: SerialPlan): Promise<SerialSpec[]> {
    const specs: SerialSpec[] = [];
    for (let i = 0; i < config.serial.length && i < COM_PORTS.length; i++) {
      if (config.serial[i].kind === 'none') continue;
      const { base, irq } = COM_PORTS[i];
      const id = `serial${i}`;
      specs.push({ kind: 'serial', id, base, irq, output: await openChardev(id, config.serial[i]) });
    }
    return specs;
  },
  create: (state, env, spec: SerialSpec) => {
    const dev = new Serial16550(state, { irq: env.irq(spec.irq), out: env.output(spec.output), clock: env.clock });
    return {
      regions: [pioRegion(spec.id, spec.base, SERIAL_IO_LENGTH, dev)],
      reset: () => dev.reset(),
      restored: () => dev.restored(),
      pollTimers: () => nsToMs(dev.pollTimer(), env.clock),
      receive: (bytes) => {
        const n = dev.receive(bytes);
        if (n) env.timersChanged();
        return n;
      },
    };
  },
});
