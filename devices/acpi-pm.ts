// devices/acpi-pm.ts — the ACPI fixed-hardware power-management block of a PIIX4-style south bridge (as QEMU's
// piix4-pm / acpi core model it): PM1a event registers (PM1_STS, PM1_EN), the PM1a control register (PM1_CNT) and
// the PM timer, at a PIO base the machine chooses. The FADT (src/boot/acpi/tables.ts) points the guest here.
//
//   base+0x00  PM1_STS  u16  status: write 1 to clear
//   base+0x02  PM1_EN   u16  enables: which status bits raise the SCI
//   base+0x04  PM1_CNT  u16  SCI_EN, SLP_TYP, SLP_EN (write-only)
//   base+0x08  PM_TMR   u32  3.579545 MHz free-running counter, read-only
//
// Sleep. Writing SLP_EN with SLP_TYP = SLP_TYP_S5 asks the machine to power off; with SLP_TYP_S3 to suspend to RAM
// (the machine stops the vCPUs, keeps RAM; on wake-up it calls `wake()` and restarts the boot CPU at the FACS
// waking vector). Other SLP_TYP values (S1, S4) are not offered in the DSDT and are ignored, as QEMU does. The
// \_S3_/\_S5_ packages in the DSDT carry these SLP_TYP values.
//
// PM timer. A 32-bit counter (the FADT sets TMR_VAL_EXT) derived from the host's CLOCK_MONOTONIC: value =
// ticks(now − timerBaseNs) mod 2^32, so it needs no host timer and keeps counting through a checkpoint on the same
// host (CLOCK_MONOTONIC is system-wide). TMR_STS is set whenever bit 31 of the counter changes; like the RTC's
// events it is computed lazily on every access, and `pollTimers` says when the next one is due while TMR_EN is set.
//
// SCI. A level-triggered line (ISA IRQ 9 by default, active-high, level: the MADT says so), asserted while SCI_EN
// is set and an enabled status bit is set (PM1_STS & PM1_EN). No SMM: ACPI mode is always on (the FADT's SMI_CMD
// is 0), so SCI_EN starts set; the guest may still clear it, which masks the SCI.
import { bool, i64, u16, u64, clearRecord, type Descriptor, type StateOf } from '../cpr/vmstate/vmstate.js';
import type { AccessSize, HostClock, IoHandler, IoRegion, IrqLine, WakeReason } from '../src/bus/types.js';
import { singleRecordDevice } from './registration.js';

/** QEMU's pc machines put the PIIX4/ICH9 PM block at 0x600 (SeaBIOS programs PMBASE there). */
export const ACPI_PM_DEFAULT_BASE = 0x600;
/** QEMU's SCI: ISA IRQ 9. */
export const ACPI_SCI_DEFAULT_IRQ = 9;
/** Bytes the block claims: PM1 event (4), PM1 control (2), a reserved word, the timer (4). */
export const ACPI_PM_IO_LENGTH = 12;

// ---- register offsets and sizes (what the FADT's *_BLK / *_LEN fields describe) ------------------------------
export const PM1_EVT_OFFSET = 0x00; // PM1a_EVT_BLK: PM1_STS then PM1_EN
export const PM1_EVT_LENGTH = 4; // PM1_EVT_LEN
export const PM1_CNT_OFFSET = 0x04; // PM1a_CNT_BLK
export const PM1_CNT_LENGTH = 2; // PM1_CNT_LEN
export const PM_TMR_OFFSET = 0x08; // PM_TMR_BLK
export const PM_TMR_LENGTH = 4; // PM_TMR_LEN
const PM1_STS_OFFSET = 0x00;
const PM1_EN_OFFSET = 0x02;

// ---- PM1_STS (ACPI 6.x, 4.8.3.1.1) ----------------------------------------------------------------------------
export const PM1_STS_TMR = 0x0001; // TMR_STS: bit 31 of the PM timer changed
export const PM1_STS_BM = 0x0010; // BM_STS: bus master activity (never set here)
export const PM1_STS_GBL = 0x0020; // GBL_STS: the firmware released the global lock (no SMM: never)
export const PM1_STS_PWRBTN = 0x0100; // PWRBTN_STS: the power button was pressed
export const PM1_STS_SLPBTN = 0x0200; // SLPBTN_STS: the sleep button was pressed (no sleep button: never)
export const PM1_STS_RTC = 0x0400; // RTC_STS: the RTC alarm woke the system (RTC_EN set)
export const PM1_STS_PCIEXP_WAKE = 0x4000; // PCIEXP_WAKE_STS (never)
export const PM1_STS_WAK = 0x8000; // WAK_STS: the system woke from a sleeping state
/** Every status bit that exists; all are write-1-to-clear. */
const PM1_STS_W1C =
  PM1_STS_TMR |
  PM1_STS_BM |
  PM1_STS_GBL |
  PM1_STS_PWRBTN |
  PM1_STS_SLPBTN |
  PM1_STS_RTC |
  PM1_STS_PCIEXP_WAKE |
  PM1_STS_WAK;

// ---- PM1_EN (4.8.3.1.2) ---------------------------------------------------------------------------------------
export const PM1_EN_TMR = 0x0001; // TMR_EN: TMR_STS raises the SCI
export const PM1_EN_GBL = 0x0020; // GBL_EN
export const PM1_EN_PWRBTN = 0x0100; // PWRBTN_EN
export const PM1_EN_SLPBTN = 0x0200; // SLPBTN_EN
export const PM1_EN_RTC = 0x0400; // RTC_EN
export const PM1_EN_PCIEXP_WAKE_DIS = 0x4000; // PCIEXP_WAKE_DIS (stored only)
const PM1_EN_WRITABLE = PM1_EN_TMR | PM1_EN_GBL | PM1_EN_PWRBTN | PM1_EN_SLPBTN | PM1_EN_RTC | PM1_EN_PCIEXP_WAKE_DIS;
/** Status bits that raise the SCI when their enable bit (same position) is set. */
const SCI_EVENTS = PM1_STS_TMR | PM1_STS_GBL | PM1_STS_PWRBTN | PM1_STS_SLPBTN | PM1_STS_RTC;

// ---- PM1_CNT (4.8.3.2.1) --------------------------------------------------------------------------------------
export const PM1_CNT_SCI_EN = 0x0001; // SCI_EN: power-management events raise the SCI (not an SMI)
export const PM1_CNT_BM_RLD = 0x0002; // BM_RLD: bus master wakes C3 (stored only)
export const PM1_CNT_GBL_RLS = 0x0004; // GBL_RLS: write-only, would raise an SMI for the firmware (no SMM: ignored)
export const PM1_CNT_SLP_TYP_SHIFT = 10; // SLP_TYP: bits 12-10, the sleeping state to enter
export const PM1_CNT_SLP_TYP_MASK = 0x1c00;
export const PM1_CNT_SLP_EN = 0x2000; // SLP_EN: write-only, enter the state SLP_TYP names
const PM1_CNT_STORED = PM1_CNT_SCI_EN | PM1_CNT_BM_RLD | PM1_CNT_SLP_TYP_MASK;

/** SLP_TYP values of this block (QEMU's PIIX4 numbering); the DSDT's \_S3_ and \_S5_ packages carry them. */
export const SLP_TYP_S5 = 0; // soft off
export const SLP_TYP_S3 = 1; // suspend to RAM

// ---- PM timer (4.8.3.3) ---------------------------------------------------------------------------------------
/** The ACPI PM timer runs at 3.579545 MHz (the NTSC colour-burst crystal, 315/88 MHz). */
export const PM_TIMER_HZ = 3_579_545;
/** The counter is 32 bits wide: the FADT sets TMR_VAL_EXT. */
export const PM_TIMER_32BIT = true;
const PM_TIMER_BITS = 32n;
const PM_TIMER_MASK = (1n << PM_TIMER_BITS) - 1n;
/** TMR_STS is set each time the counter's top bit changes: every 2^31 ticks (600 s). */
const PM_TIMER_STS_PERIOD = 1n << (PM_TIMER_BITS - 1n);
const NS_PER_SEC = 1_000_000_000n;
const HZ = BigInt(PM_TIMER_HZ);

/** The I/O ports the FADT must name for a block at `base`. */
export function acpiPmPorts(base: number = ACPI_PM_DEFAULT_BASE): { pm1aEvt: number; pm1aCnt: number; pmTmr: number } {
  if (!Number.isInteger(base) || base < 0 || base + ACPI_PM_IO_LENGTH > 0x10000)
    throw new RangeError(`ACPI PM: bad PIO base ${base}`);
  return { pm1aEvt: base + PM1_EVT_OFFSET, pm1aCnt: base + PM1_CNT_OFFSET, pmTmr: base + PM_TMR_OFFSET };
}

/** What the PM block remembers. Everything mutable is here: each thread's `AcpiPm` instance is only a view. */
export const acpiPmState = {
  name: 'acpi-pm',
  version: 1,
  minVersion: 1,
  fields: [
    u16('pm1Sts'), // PM1_STS
    u16('pm1En'), // PM1_EN
    u16('pm1Cnt'), // PM1_CNT without the write-only bits
    bool('sciLevel'), // what the SCI line was last driven to
    i64('timerBaseNs'), // CLOCK_MONOTONIC ns at which the PM timer read 0
    u64('timerCheckedTicks'), // ticks since timerBaseNs up to which TMR_STS is current
  ],
} as const satisfies Descriptor;

export type AcpiPmState = StateOf<typeof acpiPmState>;

/**
 * What the PM block asks of the machine when the guest enters a sleeping state (MachineControl provides both).
 * Calls run under the machine lock on the vCPU thread that wrote SLP_EN; they take effect asynchronously (Linux
 * spins reading WAK_STS after setting SLP_EN until the machine stops it).
 */
export interface SleepControl {
  /** S5: soft off. */
  powerOff(reason: string): void;
  /** S3: suspend to RAM; the machine resumes through `AcpiPm.wake()` and the FACS waking vector. */
  suspend(reason: string): void;
}

export interface AcpiPmOptions {
  /** The SCI (level-triggered). */
  readonly sci: IrqLine;
  readonly clock: HostClock;
  readonly sleep: SleepControl;
  /** A guest write changed what `pollTimers` would return (TMR_EN or SCI_EN): poll again soon from the main thread. */
  readonly onScheduleChange?: () => void;
}

export type { WakeReason };

type Register = { offset: number; size: number };
const REGISTERS: readonly Register[] = [
  { offset: PM1_STS_OFFSET, size: 2 },
  { offset: PM1_EN_OFFSET, size: 2 },
  { offset: PM1_CNT_OFFSET, size: 2 },
  { offset: PM_TMR_OFFSET, size: 4 },
];

export class AcpiPm implements IoHandler {
  private readonly sci: IrqLine;
  private readonly clock: HostClock;
  private readonly sleep: SleepControl;
  private readonly onScheduleChange: () => void;

  constructor(
    readonly state: AcpiPmState,
    options: AcpiPmOptions,
  ) {
    this.sci = options.sci;
    this.clock = options.clock;
    this.sleep = options.sleep;
    this.onScheduleChange = options.onScheduleChange ?? (() => {});
  }

  /** The port window this block claims. */
  regions(base: number = ACPI_PM_DEFAULT_BASE): IoRegion[] {
    acpiPmPorts(base);
    return [{ name: 'acpi-pm', space: 'pio', base, length: ACPI_PM_IO_LENGTH, handler: this }];
  }

  // ---- guest accesses ---------------------------------------------------------------------------------------

  read(offset: number, size: AccessSize): number {
    const timer = Number(this.catchUpTimer() & PM_TIMER_MASK); // one clock reading serves every byte
    this.updateSci(); // the timer may just have set TMR_STS
    // Any access width at any offset: assemble the bytes of whichever registers the access covers.
    let value = 0;
    for (let i = 0; i < size && i < 4; i++) value += this.readByte(offset + i, timer) * 2 ** (8 * i);
    return value >>> 0;
  }

  write(offset: number, size: AccessSize, value: number): void {
    this.catchUpTimer();
    const width = Math.min(size, 4);
    for (const reg of REGISTERS) {
      // The part of this write that lands in `reg`: its bits, and a mask of which bits were written.
      let bits = 0;
      let mask = 0;
      for (let i = 0; i < width; i++) {
        const at = offset + i - reg.offset;
        if (at < 0 || at >= reg.size) continue;
        bits |= ((value >>> (8 * i)) & 0xff) << (8 * at);
        mask |= 0xff << (8 * at);
      }
      if (mask !== 0) this.writeRegister(reg.offset, bits, mask);
    }
    this.updateSci();
  }

  private readByte(offset: number, timer: number): number {
    const s = this.state;
    let reg: number;
    let at: number;
    if (offset >= PM1_STS_OFFSET && offset < PM1_STS_OFFSET + 2) {
      reg = s.pm1Sts;
      at = offset - PM1_STS_OFFSET;
    } else if (offset >= PM1_EN_OFFSET && offset < PM1_EN_OFFSET + 2) {
      reg = s.pm1En;
      at = offset - PM1_EN_OFFSET;
    } else if (offset >= PM1_CNT_OFFSET && offset < PM1_CNT_OFFSET + 2) {
      reg = s.pm1Cnt;
      at = offset - PM1_CNT_OFFSET;
    } else if (offset >= PM_TMR_OFFSET && offset < PM_TMR_OFFSET + 4) {
      reg = timer;
      at = offset - PM_TMR_OFFSET;
    } else return 0; // the reserved word at 0x06 and anything past the block
    return (reg >>> (8 * at)) & 0xff;
  }

  private writeRegister(offset: number, bits: number, mask: number): void {
    const s = this.state;
    switch (offset) {
      case PM1_STS_OFFSET:
        s.pm1Sts &= ~(bits & mask & PM1_STS_W1C); // write 1 to clear; writing 0 changes nothing
        return;
      case PM1_EN_OFFSET: {
        const before = s.pm1En;
        s.pm1En = (s.pm1En & ~mask) | (bits & mask & PM1_EN_WRITABLE);
        if ((before ^ s.pm1En) & PM1_EN_TMR) this.onScheduleChange();
        return;
      }
      case PM1_CNT_OFFSET: {
        const before = s.pm1Cnt;
        s.pm1Cnt = (s.pm1Cnt & ~(mask & PM1_CNT_STORED)) | (bits & mask & PM1_CNT_STORED);
        if ((before ^ s.pm1Cnt) & PM1_CNT_SCI_EN) this.onScheduleChange();
        if (bits & mask & PM1_CNT_SLP_EN) this.enterSleep((s.pm1Cnt & PM1_CNT_SLP_TYP_MASK) >> PM1_CNT_SLP_TYP_SHIFT);
        return;
      }
      default:
        return; // PM_TMR is read-only
    }
  }

  private enterSleep(slpTyp: number): void {
    if (slpTyp === SLP_TYP_S5) this.sleep.powerOff('ACPI S5: the guest wrote SLP_EN with SLP_TYP=S5');
    else if (slpTyp === SLP_TYP_S3) this.sleep.suspend('ACPI S3: the guest wrote SLP_EN with SLP_TYP=S3');
    // Any other SLP_TYP names a state the DSDT does not offer: ignored (QEMU does the same).
  }

  // ---- what the machine calls -------------------------------------------------------------------------------

  /**
   * The power button was pressed (QMP system_powerdown): sets PWRBTN_STS and raises the SCI if the guest enabled
   * the button event (PWRBTN_EN) and SCI_EN is set. Returns whether the SCI is now raised. While the VM is
   * suspended the machine should call `wake('powerButton')` instead.
   */
  powerButton(): boolean {
    this.state.pm1Sts |= PM1_STS_PWRBTN;
    this.updateSci();
    return this.state.sciLevel;
  }

  /**
   * The machine is waking the guest from S3 (QMP system_wakeup, a power button press while suspended, the RTC
   * alarm): sets WAK_STS (and PWRBTN_STS for a button press, RTC_STS for the alarm), as the hardware does on a wake
   * event. Call it before the boot
   * CPU restarts at the waking vector. The other registers keep their values across the sleep (Linux sets
   * SCI_EN again itself after resume).
   */
  wake(reason: WakeReason = 'user'): void {
    this.catchUpTimer();
    this.state.pm1Sts |= PM1_STS_WAK | (reason === 'powerButton' ? PM1_STS_PWRBTN : reason === 'rtc' ? PM1_STS_RTC : 0);
    this.updateSci();
  }

  /**
   * Whether a wake-up event from `source` may wake the suspended guest: the RTC alarm only with RTC_EN set in PM1_EN
   * (ACPI 6.x, 4.8.3.1.2; QEMU enables its RTC wake-up with the same bit).
   */
  wakeEnabled(source: 'rtc'): boolean {
    return source === 'rtc' && (this.state.pm1En & PM1_EN_RTC) !== 0;
  }

  /**
   * Power-on state: no status, nothing enabled, SCI_EN set (ACPI mode always on), the timer starting at 0 now; drives
   * the SCI low.
   */
  reset(): void {
    const s = this.state;
    clearRecord(s);
    s.pm1Cnt = PM1_CNT_SCI_EN;
    s.timerBaseNs = this.clock.monotonicNs();
    s.timerCheckedTicks = 0n;
    s.sciLevel = false;
    this.sci.set(false);
    this.onScheduleChange();
  }

  /** After a checkpoint restored the record: drive the SCI to what the registers say. */
  restored(): void {
    this.catchUpTimer();
    const level = this.sciShouldBe();
    this.state.sciLevel = level;
    this.sci.set(level);
  }

  /**
   * Main thread: set TMR_STS if the counter's top bit changed, and return the milliseconds until it next changes
   * while that event can raise the SCI (TMR_EN and SCI_EN), or null.
   */
  pollTimers(): number | null {
    const ticks = this.catchUpTimer();
    this.updateSci();
    const s = this.state;
    if (!(s.pm1En & PM1_EN_TMR) || !(s.pm1Cnt & PM1_CNT_SCI_EN)) return null;
    const nextTicks = (ticks / PM_TIMER_STS_PERIOD + 1n) * PM_TIMER_STS_PERIOD;
    const dueNs = ceilDiv(nextTicks * NS_PER_SEC, HZ); // ns after timerBaseNs when the counter reaches nextTicks
    const nowNs = this.clock.monotonicNs() - s.timerBaseNs;
    return Math.max(0, Number(dueNs - nowNs) / 1e6);
  }

  /** The PM timer as the guest reads it. */
  timerValue(): number {
    return Number(this.ticksNow() & PM_TIMER_MASK);
  }

  // ---- internals --------------------------------------------------------------------------------------------

  /** Ticks since timerBaseNs (0 if the host clock stepped before it). */
  private ticksNow(): bigint {
    const elapsed = this.clock.monotonicNs() - this.state.timerBaseNs;
    return elapsed <= 0n ? 0n : (elapsed * HZ) / NS_PER_SEC;
  }

  /** Set TMR_STS if bit 31 changed since the last look; returns the current tick count. */
  private catchUpTimer(): bigint {
    const s = this.state;
    const ticks = this.ticksNow();
    if (ticks / PM_TIMER_STS_PERIOD > s.timerCheckedTicks / PM_TIMER_STS_PERIOD) s.pm1Sts |= PM1_STS_TMR;
    s.timerCheckedTicks = ticks;
    return ticks;
  }

  private sciShouldBe(): boolean {
    const s = this.state;
    return (s.pm1Cnt & PM1_CNT_SCI_EN) !== 0 && (s.pm1Sts & s.pm1En & SCI_EVENTS) !== 0;
  }

  private updateSci(): void {
    const level = this.sciShouldBe();
    if (level === this.state.sciLevel) return;
    this.state.sciLevel = level;
    this.sci.set(level);
  }
}

function ceilDiv(a: bigint, b: bigint): bigint {
  return (a + b - 1n) / b;
}

/** The device table's spec: the PM block's ports and its SCI. */
export interface AcpiPmSpec {
  readonly kind: 'acpi-pm';
  readonly id: string;
  readonly base: number;
  readonly sciIrq: number;
}

/** Present with ACPI, where the machine's ACPI tables say it is. */
export const acpiPmDevice = singleRecordDevice({
  kind: 'acpi-pm',
  descriptor: acpiPmState,
  plan: ({ acpiPm }: { acpiPm: { base: number; sciIrq: number } | null }): AcpiPmSpec[] =>
    acpiPm ? [{ kind: 'acpi-pm', id: 'acpi-pm', base: acpiPm.base, sciIrq: acpiPm.sciIrq }] : [],
  create: (state, env, spec: AcpiPmSpec) => {
    const dev = new AcpiPm(state, {
      sci: env.irq(spec.sciIrq),
      clock: env.clock,
      sleep: env.machine,
      onScheduleChange: () => env.timersChanged(),
    });
    return {
      regions: dev.regions(spec.base),
      reset: () => dev.reset(),
      restored: () => dev.restored(),
      pollTimers: () => dev.pollTimers(),
      powerButton: () => dev.powerButton(),
      wake: (reason) => dev.wake(reason),
      wakeEnabled: (source) => dev.wakeEnabled(source),
    };
  },
});
