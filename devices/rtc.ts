// devices/rtc.ts — the MC146818 real-time clock and its 128 bytes of CMOS memory, as on a PC (ports 0x70/0x71,
// ISA IRQ 8), following QEMU's mc146818rtc and the CMOS layout QEMU's pc machine fills in.
//
// Time model. The guest's clock is host CLOCK_REALTIME (UTC) plus `offsetNs`; setting the time only changes the
// offset, so the clock keeps running and survives a checkpoint (the new process reads its own realtime clock).
// Time registers are computed on read while the clock runs; while it is stopped (SET bit, or the divider chain
// held in reset) they read from the CMOS bytes, which the guest may then rewrite.
//
// Events (periodic, update-ended, alarm) are computed lazily: `checkedNs` records the guest time up to which the
// flags in register C are current, and every access (and `pollTimers`) first "catches up" by looking at what
// happened in (checkedNs, now]. So nothing needs a host timer unless an interrupt is enabled, and then
// `pollTimers` says when the next one is due. Several events that fall between two polls coalesce into one flag,
// as QEMU's default lost-tick policy ("discard") does.
import {
  array,
  bool,
  i64,
  u8,
  clearRecord,
  within,
  withHooks,
  type Descriptor,
  type StateOf,
} from '../cpr/vmstate/vmstate.js';
import type { AccessSize, HostClock, IoHandler, IoRegion, IrqLine } from '../src/bus/types.js';
import { KiB, MiB } from '../src/util/sizes.js';
import { singleRecordDevice } from './registration.js';

export const RTC_PORT_BASE = 0x70;
export const RTC_IRQ = 8;
/** Bytes of CMOS memory, clock registers included. */
export const CMOS_SIZE = 128;

// ---- port layout ----------------------------------------------------------------------------------------------
const PORT_INDEX = 0; // 0x70: write-only index register; bit 7 masks NMI
const PORT_DATA = 1; // 0x71: the selected CMOS byte
const INDEX_MASK = 0x7f; // the index selects one of 128 bytes
const INDEX_NMI_DISABLE = 0x80; // bit 7 of an index write: NMI disabled while set

// ---- CMOS register indices ------------------------------------------------------------------------------------
export const RTC_SECONDS = 0x00;
export const RTC_SECONDS_ALARM = 0x01;
export const RTC_MINUTES = 0x02;
export const RTC_MINUTES_ALARM = 0x03;
export const RTC_HOURS = 0x04;
export const RTC_HOURS_ALARM = 0x05;
export const RTC_DAY_OF_WEEK = 0x06; // 1 = Sunday
export const RTC_DAY_OF_MONTH = 0x07;
export const RTC_MONTH = 0x08;
export const RTC_YEAR = 0x09; // year within the century
export const RTC_REG_A = 0x0a;
export const RTC_REG_B = 0x0b;
export const RTC_REG_C = 0x0c;
export const RTC_REG_D = 0x0d;
export const CMOS_SHUTDOWN_STATUS = 0x0f; // what the BIOS does after a reset; 0xFE = S3 resume, kept across reset
export const RTC_CENTURY = 0x32; // the century byte PC BIOSes and ACPI's FADT.century point at
const RTC_IBM_PS2_CENTURY = 0x37; // IBM PS/2 location of the century byte: an alias of 0x32 (as in QEMU)

// ---- register A: update status and frequency selection --------------------------------------------------------
export const REG_A_UIP = 0x80; // update in progress: time registers are about to change (read-only)
const REG_A_DV_MASK = 0x70; // divider chain select
const REG_A_DV_32KHZ = 0x20; // 32.768 kHz time base: the only one a PC uses; larger values stop the clock
const REG_A_DV_RESET = 0x60; // both bits set: divider chain held in reset, no updates, no interrupts
const REG_A_RS_MASK = 0x0f; // rate select for the periodic interrupt (0 = none)

// ---- register B: control --------------------------------------------------------------------------------------
export const REG_B_SET = 0x80; // stop updates so the time can be set
export const REG_B_PIE = 0x40; // periodic interrupt enable
export const REG_B_AIE = 0x20; // alarm interrupt enable
export const REG_B_UIE = 0x10; // update-ended interrupt enable
export const REG_B_SQWE = 0x08; // square-wave output enable (no pin on a PC; stored only)
export const REG_B_DM = 0x04; // data mode: 1 = binary, 0 = BCD
export const REG_B_24H = 0x02; // 1 = 24-hour mode, 0 = 12-hour mode with bit 7 of the hour = PM
export const REG_B_DSE = 0x01; // daylight saving enable (stored only, as in QEMU)

// ---- register C: interrupt flags, read-only, cleared by reading -----------------------------------------------
export const REG_C_IRQF = 0x80; // an enabled flag is set: the IRQ line is asserted
export const REG_C_PF = 0x40; // periodic interrupt flag
export const REG_C_AF = 0x20; // alarm flag
export const REG_C_UF = 0x10; // update-ended flag
const REG_C_FLAGS = REG_C_PF | REG_C_AF | REG_C_UF; // the same bit positions as PIE/AIE/UIE in register B

// ---- register D -----------------------------------------------------------------------------------------------
export const REG_D_VRT = 0x80; // valid RAM and time: the battery is good

const HOUR_PM = 0x80; // 12-hour mode: PM bit in the hours (and hours alarm) register
const ALARM_DONT_CARE = 0xc0; // an alarm byte with both top bits set matches every value

const NS_PER_SEC = 1_000_000_000n;
const SEC_PER_DAY = 86_400;
const RTC_CLOCK_HZ = 32_768n; // the oscillator the periodic rate divides
/** UIP rises 244 µs before each update (8 cycles of 32.768 kHz): "UIP = 0 means no update for at least 244 µs". */
const UIP_HOLD_NS = (8n * NS_PER_SEC) / RTC_CLOCK_HZ;
/**
 * ... and falls when the update cycle is over, 1984 µs after it began (the MC146818A's update-cycle time with a
 * 32.768 kHz time base). The registers change at once here, but UIP is held as on the chip: QEMU drops it at the
 * update (a 244 µs window), which a guest polling register A through slow exits (a nested or loaded host, ~1 ms
 * per exit) can miss for many seconds; a test waiting for UIP's rising edge then hangs.
 */
const UPDATE_CYCLE_NS = 1_984_000n;
/** The first update after the divider chain leaves reset comes half a second later (data sheet). */
const DIVIDER_START_PHASE_NS = NS_PER_SEC / 2n;

// ---- QEMU pc machine CMOS layout (pc_cmos_init) ---------------------------------------------------------------
const CMOS_BASE_MEM_LO = 0x15; // base memory in KiB (at most 640)
const CMOS_BASE_MEM_HI = 0x16;
const CMOS_EXT_MEM_LO = 0x17; // memory above 1 MiB in KiB, capped at 0xFFFF
const CMOS_EXT_MEM_HI = 0x18;
const CMOS_EXT_MEM2_LO = 0x30; // the same value again (the "actual extended memory" copy)
const CMOS_EXT_MEM2_HI = 0x31;
const CMOS_MEM_ABOVE_16M_LO = 0x34; // memory between 16 MiB and 4 GiB in 64 KiB units, capped at 0xFFFF
const CMOS_MEM_ABOVE_16M_HI = 0x35;
const CMOS_MEM_ABOVE_4G_0 = 0x5b; // memory above 4 GiB in 64 KiB units, 24 bits little-endian
const CMOS_MEM_ABOVE_4G_1 = 0x5c;
const CMOS_MEM_ABOVE_4G_2 = 0x5d;
const CMOS_CPU_COUNT = 0x5f; // number of CPUs minus one; 0 when it does not fit in a byte
const CMOS_CHECKSUM_FIRST = 0x10; // the standard AT checksum covers 0x10-0x2D ...
const CMOS_CHECKSUM_LAST = 0x2d;
const CMOS_CHECKSUM_HI = 0x2e; // ... and is stored big-endian at 0x2E/0x2F
const CMOS_CHECKSUM_LO = 0x2f;

/** What the RTC remembers. Everything mutable is here: each thread's `Rtc` instance is only a view. */
export const rtcState = withHooks(
  {
    name: 'mc146818rtc',
    version: 1,
    minVersion: 1,
    fields: [
      array('cmos', 'u8', CMOS_SIZE), // CMOS bytes; clock registers hold the frozen time while the clock is stopped
      u8('index'), // the byte selected through port 0x70
      bool('nmiDisabled'), // bit 7 of the last index write
      bool('eventsPrimed'), // false until checkedNs has been set from a clock reading
      i64('offsetNs'), // guest RTC time = host CLOCK_REALTIME + offsetNs
      i64('checkedNs'), // guest time up to which PF/UF/AF in register C are current
    ],
  } as const satisfies Descriptor,
  {
    // Port 0x70 keeps only the index bits (the NMI bit is its own field): a larger index is past the CMOS bytes.
    check(s) {
      within(s.index, INDEX_MASK, 'index', `the CMOS has ${CMOS_SIZE} bytes`);
    },
  },
);

export type RtcState = StateOf<typeof rtcState>;

export interface RtcMemoryConfig {
  /** Bytes of RAM mapped below 4 GiB (QEMU's below_4g_mem_size). */
  readonly ramBelow4G: number;
  /** Bytes of RAM mapped at and above 4 GiB. */
  readonly ramAbove4G: number;
  /** Number of vCPUs at boot. */
  readonly cpus: number;
}

/**
 * Power-on state: QEMU's register defaults (A = 0x26: 32.768 kHz, 1024 Hz periodic rate; B = 0x02: 24-hour BCD;
 * D = VRT), the clock at host UTC, and the memory-size and CPU-count bytes QEMU's pc machine writes.
 */
function powerOn(state: RtcState, config: RtcMemoryConfig): void {
  const { ramBelow4G, ramAbove4G, cpus } = config;
  for (const [name, v] of [
    ['ramBelow4G', ramBelow4G],
    ['ramAbove4G', ramAbove4G],
    ['cpus', cpus],
  ] as const) {
    if (!Number.isSafeInteger(v) || v < 0)
      throw new RangeError(`rtc reset: ${name} must be a non-negative integer, got ${v}`);
  }
  clearRecord(state);
  const c = state.cmos;
  c[RTC_REG_A] = REG_A_DV_32KHZ | 0x06;
  c[RTC_REG_B] = REG_B_24H;
  c[RTC_REG_C] = 0;
  c[RTC_REG_D] = REG_D_VRT;

  const base = Math.min(Math.floor(ramBelow4G / KiB), 640);
  setCmosU16(c, CMOS_BASE_MEM_LO, CMOS_BASE_MEM_HI, base);
  const ext = Math.min(ramBelow4G > MiB ? Math.floor((ramBelow4G - MiB) / KiB) : 0, 0xffff);
  setCmosU16(c, CMOS_EXT_MEM_LO, CMOS_EXT_MEM_HI, ext);
  setCmosU16(c, CMOS_EXT_MEM2_LO, CMOS_EXT_MEM2_HI, ext);
  const above16 = Math.min(ramBelow4G > 16 * MiB ? Math.floor((ramBelow4G - 16 * MiB) / (64 * KiB)) : 0, 0xffff);
  setCmosU16(c, CMOS_MEM_ABOVE_16M_LO, CMOS_MEM_ABOVE_16M_HI, above16);
  // QEMU stores the low 24 bits of the 64 KiB count (enough for 1 TiB) without a cap.
  const above4 = Math.floor(ramAbove4G / (64 * KiB));
  c[CMOS_MEM_ABOVE_4G_0] = above4 & 0xff;
  c[CMOS_MEM_ABOVE_4G_1] = Math.floor(above4 / 0x100) & 0xff;
  c[CMOS_MEM_ABOVE_4G_2] = Math.floor(above4 / 0x10000) & 0xff;
  // Firmware that needs more than 255 CPUs reads fw_cfg NB_CPUS; 0 makes old BIOSes fail predictably (QEMU).
  c[CMOS_CPU_COUNT] = cpus >= 1 && cpus <= 0xff ? cpus - 1 : 0;

  let sum = 0;
  for (let i = CMOS_CHECKSUM_FIRST; i <= CMOS_CHECKSUM_LAST; i++) sum += c[i];
  c[CMOS_CHECKSUM_HI] = (sum >> 8) & 0xff;
  c[CMOS_CHECKSUM_LO] = sum & 0xff;

  state.index = 0;
  state.nmiDisabled = false;
  state.offsetNs = 0n; // the guest clock starts at host UTC
  state.eventsPrimed = false; // the first access reads the clock and starts event tracking from there
  state.checkedNs = 0n;
}

function setCmosU16(c: Uint8Array, lo: number, hi: number, value: number): void {
  c[lo] = value & 0xff;
  c[hi] = (value >> 8) & 0xff;
}

export interface RtcOptions {
  /** What the CMOS reports at power-on (QEMU's pc machine writes the memory sizes and the CPU count). */
  readonly memory: RtcMemoryConfig;
  /**
   * Called (under the machine lock, on whichever thread ran the access) when a guest write changed what
   * `pollTimers` would return: an enable bit, the rate, the alarm or the time. The machine should call
   * `pollTimers` again soon from the main thread. Without it the machine must re-poll after RTC writes itself.
   */
  readonly onScheduleChange?: () => void;
  /**
   * The alarm went off with AIE set: a wake-up event (ACPI's RTC_STS, if the guest enabled RTC_EN), as QEMU's RTC
   * raises one for every alarm while AIE is set. Whether it wakes anything is the machine's business: it matters
   * only while the VM is suspended, and then only the main thread runs the RTC (from pollTimers).
   */
  readonly onAlarmWake?: () => void;
}

/** The time of day and date as the RTC counts them (all binary, 24-hour). */
interface RtcTime {
  sec: number;
  min: number;
  hour: number;
  wday: number;
  mday: number;
  month: number;
  year: number;
}

/**
 * The MC146818 as seen through ports 0x70 (offset 0) and 0x71 (offset 1). One instance per thread, all over the
 * same `RtcState` record; guest accesses and `pollTimers` run under the machine lock.
 */
export class Rtc implements IoHandler {
  private readonly memory: RtcMemoryConfig;
  private readonly onScheduleChange: () => void;
  private readonly onAlarmWake: () => void;

  constructor(
    private readonly state: RtcState,
    private readonly irq: IrqLine,
    private readonly clock: HostClock,
    options: RtcOptions,
  ) {
    this.memory = options.memory;
    this.onScheduleChange = options.onScheduleChange ?? (() => {});
    this.onAlarmWake = options.onAlarmWake ?? (() => {});
  }

  /** The port window this device claims (0x70-0x71). */
  regions(base = RTC_PORT_BASE): IoRegion[] {
    return [{ name: 'rtc', space: 'pio', base, length: 2, handler: this }];
  }

  /** True while the guest has masked NMI through bit 7 of the index port. */
  get nmiDisabled(): boolean {
    return this.state.nmiDisabled;
  }

  read(offset: number, size: AccessSize): number {
    // The chip is byte-wide: a wider access is a run of byte accesses, as QEMU's memory core splits it.
    let value = 0;
    for (let i = 0; i < size; i++) value |= this.readByte(offset + i) << (8 * i);
    return value >>> 0;
  }

  write(offset: number, size: AccessSize, value: number): void {
    for (let i = 0; i < size; i++) this.writeByte(offset + i, (value >>> (8 * i)) & 0xff);
  }

  /**
   * Raise whatever became due and return the milliseconds until the next enabled interrupt (periodic if PIE,
   * update-ended if UIE, alarm if AIE), or null when none can fire. Main thread, under the machine lock.
   */
  pollTimers(): number | null {
    const now = this.clock.realtimeNs();
    this.catchUp(now);
    const s = this.state;
    const a = s.cmos[RTC_REG_A];
    const b = s.cmos[RTC_REG_B];
    if (dividerInReset(a)) return null; // "holding the dividers in reset prevents interrupts" (data sheet)
    const g = now + s.offsetNs;
    const candidates: (bigint | null)[] = [];
    if (b & REG_B_PIE) candidates.push(nextPeriodicNs(g, a));
    if (b & REG_B_UIE) candidates.push((floorDiv(g, NS_PER_SEC) + 1n) * NS_PER_SEC);
    if (b & REG_B_AIE && this.running()) {
      const sec = nextAlarmSecond(floorDiv(g, NS_PER_SEC), this.alarm());
      candidates.push(sec === null ? null : sec * NS_PER_SEC);
    }
    let next: bigint | null = null;
    for (const t of candidates) if (t !== null && (next === null || t < next)) next = t;
    return next === null ? null : Number(next - g) / 1e6;
  }

  /** After a checkpoint restored the record: drive IRQ 8 to what register C says. */
  restored(): void {
    this.irq.set((this.state.cmos[RTC_REG_C] & REG_C_IRQF) !== 0);
  }

  /** Power-on (see powerOn): the interrupt line is left to restored(), which the machine calls next. */
  reset(): void {
    powerOn(this.state, this.memory);
  }

  /**
   * A machine reset (not power-on): CMOS memory and the clock survive; interrupt enables and flags are cleared
   * and the shutdown-status byte is cleared unless it asks for S3 resume (QEMU's rtc_reset).
   */
  systemReset(): void {
    const c = this.state.cmos;
    if (c[CMOS_SHUTDOWN_STATUS] !== 0xfe) c[CMOS_SHUTDOWN_STATUS] = 0;
    c[RTC_REG_B] &= ~(REG_B_PIE | REG_B_AIE | REG_B_SQWE);
    c[RTC_REG_C] &= ~(REG_C_IRQF | REG_C_FLAGS);
    this.irq.set(false);
    this.onScheduleChange();
  }

  // ---- guest accesses ---------------------------------------------------------------------------------------

  private readByte(offset: number): number {
    if (offset !== PORT_DATA) return 0xff; // the index port is write-only; QEMU reads it as 0xFF
    const s = this.state;
    const now = this.clock.realtimeNs();
    this.catchUp(now);
    const index = aliasIndex(s.index);
    const c = s.cmos;
    if (isTimeRegister(index)) {
      if (!this.running()) return c[index];
      return this.encodeTimeRegister(index, timeAt(now + s.offsetNs));
    }
    switch (index) {
      case RTC_REG_A:
        return (c[RTC_REG_A] & ~REG_A_UIP) | (this.updateInProgress(now) ? REG_A_UIP : 0);
      case RTC_REG_C: {
        const value = c[RTC_REG_C];
        c[RTC_REG_C] = 0; // reading acknowledges every flag and releases the line
        this.irq.set(false);
        return value;
      }
      default:
        return c[index];
    }
  }

  private writeByte(offset: number, value: number): void {
    const s = this.state;
    if (offset === PORT_INDEX) {
      s.index = value & INDEX_MASK;
      s.nmiDisabled = (value & INDEX_NMI_DISABLE) !== 0;
      return;
    }
    if (offset !== PORT_DATA) return;
    const now = this.clock.realtimeNs();
    this.catchUp(now);
    const index = aliasIndex(s.index);
    const c = s.cmos;
    if (isTimeRegister(index)) {
      if (this.running()) {
        // Setting one field of a running clock: the others keep their current values, the second keeps its phase.
        const phase = this.phaseNs(now);
        this.freezeInto(now);
        c[index] = value;
        this.startFromRegisters(now, phase);
      } else {
        c[index] = value;
      }
      this.onScheduleChange();
      return;
    }
    switch (index) {
      case RTC_SECONDS_ALARM:
      case RTC_MINUTES_ALARM:
      case RTC_HOURS_ALARM:
        c[index] = value;
        this.onScheduleChange();
        return;
      case RTC_REG_A: {
        const wasRunning = this.running();
        const phase = this.phaseNs(now);
        const leavingReset = dividerInReset(c[RTC_REG_A]) && !dividerInReset(value);
        if (wasRunning && !clockRuns(value, c[RTC_REG_B])) this.freezeInto(now);
        c[RTC_REG_A] = value & ~REG_A_UIP; // UIP is read-only; it is computed on read
        if (!wasRunning && this.running()) this.startFromRegisters(now, leavingReset ? DIVIDER_START_PHASE_NS : phase);
        this.onScheduleChange();
        return;
      }
      case RTC_REG_B: {
        const wasRunning = this.running();
        const phase = this.phaseNs(now);
        let b = value;
        if (b & REG_B_SET) {
          if (wasRunning) this.freezeInto(now);
          b &= ~REG_B_UIE; // setting SET clears UIE (data sheet)
        }
        c[RTC_REG_B] = b;
        // Clearing SET restarts the clock from the registers; the second keeps its phase (as in QEMU).
        if (!wasRunning && this.running()) this.startFromRegisters(now, phase);
        // A flag that is already set raises the line as soon as its interrupt is enabled; otherwise it drops.
        if (b & c[RTC_REG_C] & REG_C_FLAGS) {
          c[RTC_REG_C] |= REG_C_IRQF;
          this.irq.set(true);
        } else {
          c[RTC_REG_C] &= ~REG_C_IRQF;
          this.irq.set(false);
        }
        this.onScheduleChange();
        return;
      }
      case RTC_REG_C:
      case RTC_REG_D:
        return; // read-only
      default:
        c[index] = value; // battery-backed user memory
    }
  }

  // ---- the clock --------------------------------------------------------------------------------------------

  /** The clock counts unless SET is held or the divider is not running from the 32.768 kHz base. */
  private running(): boolean {
    const c = this.state.cmos;
    return clockRuns(c[RTC_REG_A], c[RTC_REG_B]);
  }

  /** Where in the current second the guest clock is, in ns. */
  private phaseNs(now: bigint): bigint {
    return floorMod(now + this.state.offsetNs, NS_PER_SEC);
  }

  private updateInProgress(now: bigint): boolean {
    if (!this.running()) return false;
    const phase = this.phaseNs(now);
    return phase >= NS_PER_SEC - UIP_HOLD_NS || phase < UPDATE_CYCLE_NS;
  }

  /** Stop the clock: copy the current time into the clock registers, in the current data mode. */
  private freezeInto(now: bigint): void {
    const t = timeAt(now + this.state.offsetNs);
    const c = this.state.cmos;
    for (const index of TIME_REGISTERS) c[index] = this.encodeTimeRegister(index, t);
  }

  /** (Re)start the clock from what the clock registers say, `phase` ns into that second. */
  private startFromRegisters(now: bigint, phase: bigint): void {
    const s = this.state;
    const guestNs = BigInt(this.registersToEpochSeconds()) * NS_PER_SEC + phase;
    s.offsetNs = guestNs - now;
    s.checkedNs = guestNs; // a jump in time is not a run of updates
    s.eventsPrimed = true;
  }

  /** The clock registers as seconds since 1970 (UTC). Out-of-range fields roll over like mktime does. */
  private registersToEpochSeconds(): number {
    const c = this.state.cmos;
    const sec = this.decode(c[RTC_SECONDS]);
    const min = this.decode(c[RTC_MINUTES]);
    let hour = this.decode(c[RTC_HOURS] & ~HOUR_PM);
    if (!(c[RTC_REG_B] & REG_B_24H)) hour = (hour % 12) + (c[RTC_HOURS] & HOUR_PM ? 12 : 0);
    const mday = this.decode(c[RTC_DAY_OF_MONTH]);
    const month = this.decode(c[RTC_MONTH]);
    const year = this.decode(c[RTC_CENTURY]) * 100 + this.decode(c[RTC_YEAR]);
    const months = year * 12 + (month - 1);
    const y = Math.floor(months / 12);
    const m = months - y * 12 + 1;
    const days = daysFromCivil(y, m, 1) + (mday - 1);
    return days * SEC_PER_DAY + hour * 3600 + min * 60 + sec;
  }

  private encodeTimeRegister(index: number, t: RtcTime): number {
    switch (index) {
      case RTC_SECONDS:
        return this.encode(t.sec);
      case RTC_MINUTES:
        return this.encode(t.min);
      case RTC_HOURS:
        if (this.state.cmos[RTC_REG_B] & REG_B_24H) return this.encode(t.hour);
        return this.encode(t.hour % 12 === 0 ? 12 : t.hour % 12) | (t.hour >= 12 ? HOUR_PM : 0);
      case RTC_DAY_OF_WEEK:
        return this.encode(t.wday + 1);
      case RTC_DAY_OF_MONTH:
        return this.encode(t.mday);
      case RTC_MONTH:
        return this.encode(t.month);
      case RTC_YEAR:
        return this.encode(t.year % 100);
      case RTC_CENTURY:
        return this.encode(Math.floor(t.year / 100) % 100);
      default:
        return 0;
    }
  }

  private encode(v: number): number {
    return this.state.cmos[RTC_REG_B] & REG_B_DM ? v & 0xff : ((Math.floor(v / 10) % 10) << 4) | (v % 10);
  }

  private decode(v: number): number {
    return this.state.cmos[RTC_REG_B] & REG_B_DM ? v : (v >> 4) * 10 + (v & 0x0f);
  }

  /** The alarm as hour/minute/second in binary 24-hour form; -1 = don't care; null = a value that never matches. */
  private alarm(): Alarm | null {
    const c = this.state.cmos;
    const sec = this.alarmField(c[RTC_SECONDS_ALARM], 59);
    const min = this.alarmField(c[RTC_MINUTES_ALARM], 59);
    let hour: number | null;
    const h = c[RTC_HOURS_ALARM];
    if ((h & ALARM_DONT_CARE) === ALARM_DONT_CARE) hour = -1;
    else if (c[RTC_REG_B] & REG_B_24H) hour = this.alarmField(h, 23);
    else {
      const h12 = this.strictDecode(h & ~HOUR_PM);
      hour = h12 === null || h12 < 1 || h12 > 12 ? null : (h12 % 12) + (h & HOUR_PM ? 12 : 0);
    }
    if (sec === null || min === null || hour === null) return null;
    return { hour, min, sec };
  }

  private alarmField(v: number, max: number): number | null {
    if ((v & ALARM_DONT_CARE) === ALARM_DONT_CARE) return -1;
    const d = this.strictDecode(v);
    return d === null || d > max ? null : d;
  }

  /** Decode, refusing BCD digits above 9 (such an alarm byte can never equal a time register). */
  private strictDecode(v: number): number | null {
    if (this.state.cmos[RTC_REG_B] & REG_B_DM) return v;
    if ((v & 0x0f) > 9 || v >> 4 > 9) return null;
    return (v >> 4) * 10 + (v & 0x0f);
  }

  // ---- events -----------------------------------------------------------------------------------------------

  /** Set the flags for everything that happened in (checkedNs, now] and raise IRQ 8 for newly set enabled ones. */
  private catchUp(now: bigint): void {
    const s = this.state;
    const c = s.cmos;
    const g = now + s.offsetNs;
    if (!s.eventsPrimed) {
      s.checkedNs = g;
      s.eventsPrimed = true;
      return;
    }
    const from = s.checkedNs;
    if (g <= from) {
      // The host clock stepped back (or no time passed): follow it, without replaying events.
      s.checkedNs = g;
      return;
    }
    s.checkedNs = g;
    const a = c[RTC_REG_A];
    if (dividerInReset(a)) return;
    let flags = 0;
    const period = periodTicks(a);
    if (period !== 0n && floorDiv(ticksAt(g), period) > floorDiv(ticksAt(from), period)) flags |= REG_C_PF;
    const fromSec = floorDiv(from, NS_PER_SEC);
    const toSec = floorDiv(g, NS_PER_SEC);
    if (toSec > fromSec) {
      flags |= REG_C_UF;
      if (this.running()) {
        const at = nextAlarmSecond(fromSec, this.alarm());
        if (at !== null && at <= toSec) flags |= REG_C_AF;
      }
    }
    const fresh = flags & ~c[RTC_REG_C];
    c[RTC_REG_C] |= flags;
    if (fresh & c[RTC_REG_B]) {
      c[RTC_REG_C] |= REG_C_IRQF;
      this.irq.set(true);
    }
    if (flags & REG_C_AF && c[RTC_REG_B] & REG_B_AIE) this.onAlarmWake();
  }
}

// ---- pure helpers -------------------------------------------------------------------------------------------

const TIME_REGISTERS = [
  RTC_SECONDS,
  RTC_MINUTES,
  RTC_HOURS,
  RTC_DAY_OF_WEEK,
  RTC_DAY_OF_MONTH,
  RTC_MONTH,
  RTC_YEAR,
  RTC_CENTURY,
] as const;

const TIME_REGISTER = new Uint8Array(CMOS_SIZE);
for (const index of TIME_REGISTERS) TIME_REGISTER[index] = 1;

/** Clock registers read the running time; the alarm bytes between them do not. */
function isTimeRegister(index: number): boolean {
  return TIME_REGISTER[index] === 1;
}

function aliasIndex(index: number): number {
  return index === RTC_IBM_PS2_CENTURY ? RTC_CENTURY : index;
}

function dividerInReset(a: number): boolean {
  return (a & REG_A_DV_RESET) === REG_A_DV_RESET;
}

function clockRuns(a: number, b: number): boolean {
  return (b & REG_B_SET) === 0 && (a & REG_A_DV_MASK) <= REG_A_DV_32KHZ;
}

/**
 * The periodic interrupt's period in 32.768 kHz ticks for register A's rate select, or 0 for none. Rates 1 and 2
 * behave as 8 and 9 with a 32.768 kHz time base (data sheet table; QEMU does the same).
 */
function periodTicks(a: number): bigint {
  let rs = a & REG_A_RS_MASK;
  if (rs === 0) return 0n;
  if (rs <= 2) rs += 7;
  return 1n << BigInt(rs - 1);
}

function ticksAt(guestNs: bigint): bigint {
  return floorDiv(guestNs * RTC_CLOCK_HZ, NS_PER_SEC);
}

/** The first guest ns after `g` at which a periodic boundary falls, or null if the rate is 0. */
function nextPeriodicNs(g: bigint, a: number): bigint | null {
  const period = periodTicks(a);
  if (period === 0n) return null;
  const tick = (floorDiv(ticksAt(g), period) + 1n) * period;
  return -floorDiv(-tick * NS_PER_SEC, RTC_CLOCK_HZ); // ceil: the first ns whose tick count reaches `tick`
}

interface Alarm {
  hour: number;
  min: number;
  sec: number;
}

/**
 * The first whole second after `afterSec` (seconds since 1970) whose time of day matches the alarm, or null if
 * the alarm can never match. Every match repeats daily, so looking at today and tomorrow is enough.
 */
function nextAlarmSecond(afterSec: bigint, alarm: Alarm | null): bigint | null {
  if (alarm === null) return null;
  const tod = Number(floorMod(afterSec, BigInt(SEC_PER_DAY)));
  const dayStart = afterSec - BigInt(tod);
  for (let day = 0; day < 2; day++) {
    const base = day * SEC_PER_DAY;
    for (let h = 0; h < 24; h++) {
      if (alarm.hour !== -1 && alarm.hour !== h) continue;
      if (base + h * 3600 + 3599 <= tod) continue;
      for (let m = 0; m < 60; m++) {
        if (alarm.min !== -1 && alarm.min !== m) continue;
        if (base + h * 3600 + m * 60 + 59 <= tod) continue;
        for (let s = 0; s < 60; s++) {
          if (alarm.sec !== -1 && alarm.sec !== s) continue;
          const t = base + h * 3600 + m * 60 + s;
          if (t > tod) return dayStart + BigInt(t);
        }
      }
    }
  }
  return null;
}

/** Calendar fields for a guest time in ns since 1970 (UTC, proleptic Gregorian). */
function timeAt(guestNs: bigint): RtcTime {
  const secs = floorDiv(guestNs, NS_PER_SEC);
  const days = Number(floorDiv(secs, BigInt(SEC_PER_DAY)));
  const tod = Number(floorMod(secs, BigInt(SEC_PER_DAY)));
  const [year, month, mday] = civilFromDays(days);
  return {
    sec: tod % 60,
    min: Math.floor(tod / 60) % 60,
    hour: Math.floor(tod / 3600),
    wday: ((days % 7) + 7 + 4) % 7, // 1970-01-01 was a Thursday (Sunday = 0)
    mday,
    month,
    year,
  };
}

// Howard Hinnant's days_from_civil / civil_from_days: exact for every proleptic Gregorian date.
function daysFromCivil(y: number, m: number, d: number): number {
  y -= m <= 2 ? 1 : 0;
  const era = Math.floor(y / 400);
  const yoe = y - era * 400;
  const doy = Math.floor((153 * (m > 2 ? m - 3 : m + 9) + 2) / 5) + d - 1;
  const doe = yoe * 365 + Math.floor(yoe / 4) - Math.floor(yoe / 100) + doy;
  return era * 146097 + doe - 719468;
}

function civilFromDays(z: number): [number, number, number] {
  z += 719468;
  const era = Math.floor(z / 146097);
  const doe = z - era * 146097;
  const yoe = Math.floor((doe - Math.floor(doe / 1460) + Math.floor(doe / 36524) - Math.floor(doe / 146096)) / 365);
  const doy = doe - (365 * yoe + Math.floor(yoe / 4) - Math.floor(yoe / 100));
  const mp = Math.floor((5 * doy + 2) / 153);
  const d = doy - Math.floor((153 * mp + 2) / 5) + 1;
  const m = mp < 10 ? mp + 3 : mp - 9;
  const y = yoe + era * 400 + (m <= 2 ? 1 : 0);
  return [y, m, d];
}

function floorDiv(a: bigint, b: bigint): bigint {
  const q = a / b;
  return a % b !== 0n && a < 0n !== b < 0n ? q - 1n : q;
}

function floorMod(a: bigint, b: bigint): bigint {
  return a - floorDiv(a, b) * b;
}

/** The device table's spec: what the CMOS reports about the machine. */
export interface RtcSpec {
  readonly kind: 'rtc';
  readonly id: string;
  readonly memory: RtcMemoryConfig;
}

/** What the machine plan says that the CMOS reports. */
export interface RtcPlan {
  readonly config: { readonly memory: { readonly size: number }; readonly cpus: number };
  /** Guest RAM as mapped. */
  readonly ram: readonly { readonly gpa: number; readonly size: number }[];
}

/** Always present, at 0x70 with IRQ 8, as on every PC. */
export const rtcDevice = singleRecordDevice({
  kind: 'rtc',
  descriptor: rtcState,
  plan: ({ config, ram }: RtcPlan): RtcSpec[] => {
    const below4G = ram.filter((r) => r.gpa < 2 ** 32).reduce((n, r) => n + r.size, 0);
    const memory = { ramBelow4G: below4G, ramAbove4G: config.memory.size - below4G, cpus: config.cpus };
    return [{ kind: 'rtc', id: 'rtc', memory }];
  },
  create: (state, env, spec: RtcSpec) => {
    const dev = new Rtc(state, env.irq(RTC_IRQ), env.clock, {
      memory: spec.memory,
      onScheduleChange: () => env.timersChanged(),
      onAlarmWake: () => env.machine.wakeEvent('rtc'),
    });
    return {
      regions: dev.regions(RTC_PORT_BASE),
      reset: () => dev.reset(),
      systemReset: () => dev.systemReset(),
      restored: () => dev.restored(),
      pollTimers: () => dev.pollTimers(),
    };
  },
});
