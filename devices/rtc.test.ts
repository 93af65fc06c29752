import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { makeRecord, newRecord, recordBytes } from '../cpr/vmstate/vmstate.js';
import type { HostClock, IrqLine } from '../src/bus/types.js';
import {
  Rtc,
  rtcState,
  type RtcState,
  type RtcMemoryConfig,
  RTC_SECONDS,
  RTC_SECONDS_ALARM,
  RTC_MINUTES,
  RTC_MINUTES_ALARM,
  RTC_HOURS,
  RTC_HOURS_ALARM,
  RTC_DAY_OF_WEEK,
  RTC_DAY_OF_MONTH,
  RTC_MONTH,
  RTC_YEAR,
  RTC_REG_A,
  RTC_REG_B,
  RTC_REG_C,
  RTC_REG_D,
  RTC_CENTURY,
  REG_A_UIP,
  REG_B_SET,
  REG_B_PIE,
  REG_B_AIE,
  REG_B_UIE,
  REG_B_DM,
  REG_B_24H,
  REG_C_IRQF,
  REG_C_PF,
  REG_C_AF,
  REG_C_UF,
  REG_D_VRT,
} from './rtc.js';

const NS = 1_000_000_000n;
const MS = 1_000_000n;
const GiB = 1024 ** 3;
const MiB = 1024 ** 2;

/** A clock the test moves by hand. */
class FakeClock implements HostClock {
  constructor(public now: bigint) {}
  realtimeNs(): bigint {
    return this.now;
  }
  monotonicNs(): bigint {
    return this.now;
  }
  advance(ns: bigint): void {
    this.now += ns;
  }
}

/** An IRQ line that remembers its level and counts rising edges. */
class RecordingIrq implements IrqLine {
  level = false;
  raises = 0;
  set(level: boolean): void {
    if (level && !this.level) this.raises++;
    this.level = level;
  }
  pulse(): void {
    this.raises++;
  }
}

const at = (iso: string) => BigInt(Date.parse(iso)) * MS;

const MEMORY: RtcMemoryConfig = { ramBelow4G: 128 * MiB, ramAbove4G: 0, cpus: 2 };

function machine(iso = '2024-02-29T13:45:30.250Z', mem = MEMORY) {
  const clock = new FakeClock(at(iso));
  const irq = new RecordingIrq();
  const state = newRecord(rtcState);
  const wakes: bigint[] = [];
  const rtc = new Rtc(state, irq, clock, { memory: mem, onAlarmWake: () => wakes.push(clock.now) });
  rtc.reset();
  const cmos = (index: number) => {
    rtc.write(0, 1, index);
    return rtc.read(1, 1);
  };
  const setCmos = (index: number, value: number) => {
    rtc.write(0, 1, index);
    rtc.write(1, 1, value);
  };
  return { clock, irq, state, rtc, cmos, setCmos, wakes };
}

function readTime(cmos: (i: number) => number) {
  return [RTC_SECONDS, RTC_MINUTES, RTC_HOURS, RTC_DAY_OF_WEEK, RTC_DAY_OF_MONTH, RTC_MONTH, RTC_YEAR, RTC_CENTURY].map(
    cmos,
  );
}

test('rtc: power-on reads the host UTC time in BCD, 24-hour mode, with the century byte', () => {
  const { cmos } = machine('2024-02-29T13:45:30.250Z');
  // 2024-02-29 was a Thursday: day of week 5 (Sunday = 1).
  assert.equal(readTime(cmos), [0x30, 0x45, 0x13, 0x05, 0x29, 0x02, 0x24, 0x20]);
  assert.is(cmos(RTC_REG_A), 0x26);
  assert.is(cmos(RTC_REG_B), REG_B_24H);
  assert.is(cmos(RTC_REG_D), REG_D_VRT);
});

test('rtc: binary data mode reads the same time as plain numbers', () => {
  const { cmos, setCmos } = machine('2024-02-29T13:45:30.250Z');
  setCmos(RTC_REG_B, REG_B_24H | REG_B_DM);
  assert.equal(readTime(cmos), [30, 45, 13, 5, 29, 2, 24, 20]);
});

test('rtc: 12-hour mode reports 1-12 with bit 7 meaning PM', () => {
  const m = machine('2024-02-29T13:45:30Z');
  m.setCmos(RTC_REG_B, 0); // BCD, 12-hour
  assert.is(m.cmos(RTC_HOURS), 0x80 | 0x01); // 1 PM
  m.clock.now = at('2024-02-29T00:10:00Z');
  assert.is(m.cmos(RTC_HOURS), 0x12); // 12 AM
  m.clock.now = at('2024-02-29T12:10:00Z');
  assert.is(m.cmos(RTC_HOURS), 0x80 | 0x12); // 12 PM
  m.setCmos(RTC_REG_B, REG_B_DM); // binary, 12-hour
  m.clock.now = at('2024-02-29T23:10:00Z');
  assert.is(m.cmos(RTC_HOURS), 0x80 | 11);
});

test('rtc: the index register keeps 7 bits; bit 7 disables NMI; the index port reads 0xFF', () => {
  const { rtc } = machine();
  rtc.write(0, 1, 0x80 | RTC_REG_D);
  assert.is(rtc.read(1, 1), REG_D_VRT);
  assert.ok(rtc.nmiDisabled);
  rtc.write(0, 1, 0x7f);
  rtc.write(1, 1, 0xa5);
  rtc.write(0, 1, 0xff); // selects 0x7F again, NMI masked
  assert.is(rtc.read(1, 1), 0xa5);
  assert.is(rtc.read(0, 1), 0xff);
  rtc.write(0, 1, 0x0e);
  assert.not.ok(rtc.nmiDisabled);
});

test('rtc: a 16-bit access to 0x70 writes the index and then the data byte', () => {
  const { rtc, cmos } = machine();
  rtc.write(0, 2, (0x55 << 8) | 0x40);
  assert.is(cmos(0x40), 0x55);
});

test('rtc: the SET bit freezes the clock; the guest-set time then keeps running from the new value', () => {
  const { clock, cmos, setCmos } = machine('2024-02-29T13:45:30.250Z');
  setCmos(RTC_REG_B, REG_B_24H | REG_B_SET);
  clock.advance(5n * NS);
  assert.is(cmos(RTC_SECONDS), 0x30, 'frozen while SET');
  assert.is(cmos(RTC_REG_A) & REG_A_UIP, 0, 'no update in progress while SET');
  // 1999-12-31 23:59:58, a Friday.
  setCmos(RTC_SECONDS, 0x58);
  setCmos(RTC_MINUTES, 0x59);
  setCmos(RTC_HOURS, 0x23);
  setCmos(RTC_DAY_OF_MONTH, 0x31);
  setCmos(RTC_MONTH, 0x12);
  setCmos(RTC_YEAR, 0x99);
  setCmos(RTC_CENTURY, 0x19);
  clock.advance(2n * NS);
  assert.equal(readTime(cmos).slice(0, 3), [0x58, 0x59, 0x23], 'still frozen at the written value');
  setCmos(RTC_REG_B, REG_B_24H);
  assert.equal(readTime(cmos), [0x58, 0x59, 0x23, 0x06, 0x31, 0x12, 0x99, 0x19]);
  clock.advance(3n * NS);
  assert.equal(readTime(cmos), [0x01, 0x00, 0x00, 0x07, 0x01, 0x01, 0x00, 0x20], 'rolled into 2000-01-01, a Saturday');
});

test('rtc: writing one clock field while running changes only that field', () => {
  const { clock, cmos, setCmos } = machine('2024-02-29T13:45:30.250Z');
  setCmos(RTC_YEAR, 0x25);
  assert.equal(
    readTime(cmos),
    [0x30, 0x45, 0x13, 0x07, 0x01, 0x03, 0x25, 0x20],
    '2025-02-29 rolls over to Saturday 03-01 like mktime',
  );
  clock.advance(NS);
  assert.is(cmos(RTC_SECONDS), 0x31);
});

test('rtc: holding the divider in reset stops the clock; releasing it starts the next second half a second later', () => {
  const { clock, cmos, setCmos } = machine('2024-02-29T13:45:30.900Z');
  setCmos(RTC_REG_A, 0x70);
  clock.advance(10n * NS);
  assert.is(cmos(RTC_SECONDS), 0x30);
  setCmos(RTC_REG_A, 0x26);
  clock.advance(499n * MS);
  assert.is(cmos(RTC_SECONDS), 0x30);
  clock.advance(2n * MS);
  assert.is(cmos(RTC_SECONDS), 0x31);
});

test('rtc: UIP reads 1 from 244 µs before an update until the update cycle ends 1984 µs after it, and 0 otherwise', () => {
  const { clock, cmos } = machine('2024-02-29T13:45:30.500Z');
  assert.is(cmos(RTC_REG_A) & REG_A_UIP, 0);
  clock.now = at('2024-02-29T13:45:30.999Z') + 700_000n; // 300 µs before the update: no update for 244 µs
  assert.is(cmos(RTC_REG_A) & REG_A_UIP, 0);
  clock.advance(200_000n); // 100 µs before the update
  assert.is(cmos(RTC_REG_A) & REG_A_UIP, REG_A_UIP);
  assert.is(cmos(RTC_SECONDS), 0x30, 'the registers still hold the old second');
  clock.advance(200_000n); // 100 µs into the update cycle
  assert.is(cmos(RTC_REG_A) & REG_A_UIP, REG_A_UIP);
  assert.is(cmos(RTC_SECONDS), 0x31, 'the new second is readable at once');
  clock.advance(1_883_000n); // 1983 µs into it
  assert.is(cmos(RTC_REG_A) & REG_A_UIP, REG_A_UIP);
  clock.advance(1_000n);
  assert.is(cmos(RTC_REG_A) & REG_A_UIP, 0);
});

test('rtc: a guest polling register A every millisecond sees UIP rise once per update', () => {
  const { clock, cmos } = machine('2024-02-29T13:45:30.000Z');
  let rises = 0;
  let was = cmos(RTC_REG_A) & REG_A_UIP;
  for (let ms = 0; ms < 5000; ms++) {
    clock.advance(MS + 37_000n); // 1.037 ms per poll: never in step with the updates
    const uip = cmos(RTC_REG_A) & REG_A_UIP;
    if (uip && !was) rises++;
    was = uip;
  }
  assert.is(rises, 5);
});

test('rtc: flags are set whether or not their interrupt is enabled (the periodic flag at the default 1024 Hz)', () => {
  const { clock, irq, rtc, cmos } = machine('2024-02-29T13:45:30.250Z');
  assert.is(cmos(RTC_REG_C), 0);
  clock.advance(NS);
  assert.is(rtc.pollTimers(), null);
  assert.not.ok(irq.level);
  assert.is(cmos(RTC_REG_C), REG_C_PF | REG_C_UF);
});

test('rtc: register C reports the flags, clears on read and lowers IRQ 8', () => {
  const { clock, irq, rtc, cmos, setCmos } = machine('2024-02-29T13:45:30.250Z');
  setCmos(RTC_REG_A, 0x20); // periodic rate 0: only the flags under test appear in C
  setCmos(RTC_REG_B, REG_B_24H | REG_B_UIE);
  assert.is(rtc.pollTimers(), 750);
  clock.advance(750n * MS);
  assert.is(rtc.pollTimers(), 1000);
  assert.ok(irq.level);
  assert.is(cmos(RTC_REG_C), REG_C_IRQF | REG_C_UF);
  assert.not.ok(irq.level);
  assert.is(cmos(RTC_REG_C), 0);
});

test('rtc: registers C and D ignore writes', () => {
  const { cmos, setCmos } = machine();
  setCmos(RTC_REG_C, 0xff);
  setCmos(RTC_REG_D, 0x00);
  assert.is(cmos(RTC_REG_C), 0);
  assert.is(cmos(RTC_REG_D), REG_D_VRT);
});

test('rtc: the periodic interrupt fires at the rate programmed in register A', () => {
  const { clock, irq, rtc, cmos, setCmos } = machine('2024-02-29T13:45:30.000Z');
  setCmos(RTC_REG_A, 0x2f); // rate 15: 2 Hz
  setCmos(RTC_REG_B, REG_B_24H | REG_B_PIE);
  let fired = 0;
  const end = clock.now + 10n * NS;
  while (clock.now < end) {
    const ms = rtc.pollTimers();
    assert.ok(ms !== null && ms > 0 && ms <= 500);
    if (irq.level) {
      fired++;
      assert.is(cmos(RTC_REG_C) & (REG_C_IRQF | REG_C_PF), REG_C_IRQF | REG_C_PF);
    }
    clock.advance(BigInt(Math.ceil(ms! * 1e6)));
  }
  rtc.pollTimers();
  if (irq.level) fired++;
  assert.is(fired, 20);

  setCmos(RTC_REG_A, 0x26); // rate 6: 1024 Hz
  const ms = rtc.pollTimers()!;
  assert.ok(ms > 0 && ms <= 1000 / 1024 + 1e-6, `next tick in ${ms} ms`);
  setCmos(RTC_REG_A, 0x20); // rate 0: no periodic interrupt
  assert.is(rtc.pollTimers(), null);
});

test('rtc: the periodic flag is set even while PIE is off, and enabling PIE then raises the line', () => {
  const { clock, irq, rtc, cmos, setCmos } = machine('2024-02-29T13:45:30.000Z');
  cmos(RTC_REG_C);
  clock.advance(2n * MS); // two 1024 Hz periods
  assert.is(rtc.pollTimers(), null, 'nothing enabled, no timer');
  assert.not.ok(irq.level);
  setCmos(RTC_REG_B, REG_B_24H | REG_B_PIE);
  assert.ok(irq.level);
  assert.is(cmos(RTC_REG_C), REG_C_IRQF | REG_C_PF);
});

test('rtc: the update-ended interrupt comes once a second', () => {
  const { clock, irq, rtc, cmos, setCmos } = machine('2024-02-29T13:45:30.600Z');
  setCmos(RTC_REG_A, 0x20); // periodic rate 0: only the flags under test appear in C
  setCmos(RTC_REG_B, REG_B_24H | REG_B_UIE);
  for (let i = 0; i < 3; i++) {
    const ms = rtc.pollTimers()!;
    assert.is(ms, i === 0 ? 400 : 1000);
    clock.advance(BigInt(ms) * MS - 1n);
    rtc.pollTimers();
    assert.not.ok(irq.level, 'not yet');
    clock.advance(1n);
    rtc.pollTimers();
    assert.ok(irq.level);
    assert.is(cmos(RTC_REG_C), REG_C_IRQF | REG_C_UF);
    assert.is(cmos(RTC_SECONDS), 0x31 + i);
  }
});

test('rtc: setting SET clears UIE', () => {
  const { cmos, setCmos } = machine();
  setCmos(RTC_REG_B, REG_B_24H | REG_B_UIE | REG_B_SET);
  assert.is(cmos(RTC_REG_B), REG_B_24H | REG_B_SET);
});

test('rtc: the alarm interrupt fires when the time reaches the alarm registers', () => {
  const { clock, irq, rtc, cmos, setCmos } = machine('2024-02-29T13:45:30.250Z');
  setCmos(RTC_REG_A, 0x20); // periodic rate 0: only the flags under test appear in C
  setCmos(RTC_HOURS_ALARM, 0x13);
  setCmos(RTC_MINUTES_ALARM, 0x45);
  setCmos(RTC_SECONDS_ALARM, 0x35);
  setCmos(RTC_REG_B, REG_B_24H | REG_B_AIE);
  assert.is(rtc.pollTimers(), 4750);
  clock.advance(4749n * MS);
  rtc.pollTimers();
  assert.not.ok(irq.level);
  clock.advance(1n * MS);
  assert.is(rtc.pollTimers(), 86_400_000, 'the same alarm comes again tomorrow');
  assert.ok(irq.level);
  assert.is(cmos(RTC_REG_C), REG_C_IRQF | REG_C_AF | REG_C_UF);
});

test('rtc: every alarm that goes off with AIE set is a wake-up event (ACPI RTC_STS), even if AF is still set; none without AIE', () => {
  const { clock, rtc, setCmos, wakes } = machine('2024-02-29T13:45:30.250Z');
  setCmos(RTC_HOURS_ALARM, 0xc0);
  setCmos(RTC_MINUTES_ALARM, 0xc0);
  setCmos(RTC_SECONDS_ALARM, 0xc0);
  clock.advance(1000n * MS);
  rtc.pollTimers();
  assert.equal(wakes, [], 'AIE is off: the alarm only sets AF');
  setCmos(RTC_REG_B, REG_B_24H | REG_B_AIE);
  assert.is(rtc.pollTimers(), 750);
  clock.advance(750n * MS);
  rtc.pollTimers();
  assert.equal(wakes, [at('2024-02-29T13:45:32Z')]);
  clock.advance(1000n * MS); // register C not read: AF stays set, the next alarm still wakes
  rtc.pollTimers();
  assert.is(wakes.length, 2);
  clock.advance(500n * MS);
  rtc.pollTimers();
  assert.is(wakes.length, 2, 'no alarm between two updates');
});

test("rtc: alarm bytes 0xC0-0xFF are don't-care and a 12-hour alarm matches a 12-hour clock", () => {
  const m = machine('2024-02-29T13:45:30.250Z');
  m.setCmos(RTC_HOURS_ALARM, 0xc0);
  m.setCmos(RTC_MINUTES_ALARM, 0xff);
  m.setCmos(RTC_SECONDS_ALARM, 0xc0);
  m.setCmos(RTC_REG_B, REG_B_24H | REG_B_AIE);
  assert.is(m.rtc.pollTimers(), 750, 'every second matches');

  m.setCmos(RTC_REG_B, 0); // 12-hour BCD, alarms off while reprogramming
  m.cmos(RTC_REG_C);
  m.setCmos(RTC_HOURS_ALARM, 0x80 | 0x02); // 2 PM
  m.setCmos(RTC_MINUTES_ALARM, 0x00);
  m.setCmos(RTC_SECONDS_ALARM, 0xc0); // any second of 14:00
  m.setCmos(RTC_REG_B, REG_B_AIE);
  assert.is(m.rtc.pollTimers(), (14 * 3600 - (13 * 3600 + 45 * 60 + 30.25)) * 1000);
  m.clock.now = at('2024-02-29T14:00:00Z');
  m.rtc.pollTimers();
  assert.ok(m.irq.level);
  assert.is(m.cmos(RTC_REG_C) & REG_C_AF, REG_C_AF);
  assert.is(m.rtc.pollTimers(), 1000, 'and again at 14:00:01');

  m.setCmos(RTC_HOURS_ALARM, 0x13); // 13 is not an hour on a 12-hour clock
  assert.is(m.rtc.pollTimers(), null);
});

test("rtc: CMOS memory-size bytes for 128 MiB, 3.5 GiB and 8 GiB follow QEMU's pc machine", () => {
  const bytes = (ramBelow4G: number, ramAbove4G: number, cpus: number) => {
    const { cmos } = machine(undefined, { ramBelow4G, ramAbove4G, cpus });
    return [0x15, 0x16, 0x17, 0x18, 0x30, 0x31, 0x34, 0x35, 0x5b, 0x5c, 0x5d, 0x5f].map(cmos);
  };
  // 128 MiB: 640 KiB base; 127 MiB above 1 MiB = 130048 KiB, capped at 0xFFFF; (128-16) MiB / 64 KiB = 0x700.
  assert.equal(bytes(128 * MiB, 0, 1), [0x80, 0x02, 0xff, 0xff, 0xff, 0xff, 0x00, 0x07, 0, 0, 0, 0]);
  // 3.5 GiB: 3 GiB below the PCI hole, 512 MiB at 4 GiB; (3072-16) MiB / 64 KiB = 0xBF00; 512 MiB / 64 KiB = 0x2000.
  assert.equal(bytes(3 * GiB, 512 * MiB, 4), [0x80, 0x02, 0xff, 0xff, 0xff, 0xff, 0x00, 0xbf, 0x00, 0x20, 0x00, 3]);
  // 8 GiB: 3 GiB below, 5 GiB above = 0x14000 units of 64 KiB.
  assert.equal(bytes(3 * GiB, 5 * GiB, 8), [0x80, 0x02, 0xff, 0xff, 0xff, 0xff, 0x00, 0xbf, 0x00, 0x40, 0x01, 7]);
  // Tiny RAM and too many CPUs for one byte.
  assert.equal(bytes(512 * 1024, 0, 300), [0x00, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
});

test('rtc: the standard checksum at 0x2E/0x2F covers bytes 0x10-0x2D', () => {
  const { cmos } = machine(undefined, { ramBelow4G: 64 * MiB, ramAbove4G: 0, cpus: 1 });
  let sum = 0;
  for (let i = 0x10; i <= 0x2d; i++) sum += cmos(i);
  assert.ok(sum > 0);
  assert.is((cmos(0x2e) << 8) | cmos(0x2f), sum);
});

test('rtc: a restored copy of the record keeps the guest time and re-drives IRQ 8', () => {
  const a = machine('2024-02-29T13:45:30.250Z');
  a.setCmos(RTC_REG_B, REG_B_24H | REG_B_SET);
  a.setCmos(RTC_YEAR, 0x30);
  a.setCmos(RTC_REG_B, REG_B_24H | REG_B_UIE);
  a.clock.advance(NS);
  a.rtc.pollTimers();
  assert.ok(a.irq.level);

  const copy = new SharedArrayBuffer(a.state.$buffer.byteLength);
  new Uint8Array(copy).set(recordBytes(a.state));
  const state: RtcState = makeRecord(rtcState, copy);
  const irq = new RecordingIrq();
  const rtc = new Rtc(state, irq, a.clock, { memory: MEMORY });
  rtc.restored();
  assert.ok(irq.level, 'the pending update interrupt is asserted again');
  rtc.write(0, 1, RTC_YEAR);
  assert.is(rtc.read(1, 1), 0x30);
  rtc.write(0, 1, RTC_SECONDS);
  assert.is(rtc.read(1, 1), 0x31);
});

test('rtc: two instances over one record (two threads) see one device', () => {
  const a = machine('2024-02-29T13:45:30.250Z');
  const other = new Rtc(a.state, a.irq, a.clock, { memory: MEMORY });
  a.setCmos(0x40, 0x12);
  other.write(0, 1, 0x40);
  assert.is(other.read(1, 1), 0x12);
});

test('rtc: a machine reset clears interrupt enables and flags but keeps CMOS memory and time', () => {
  const { clock, irq, rtc, cmos, setCmos } = machine('2024-02-29T13:45:30.250Z');
  setCmos(0x40, 0x77);
  setCmos(0x0f, 0x05);
  setCmos(RTC_REG_B, REG_B_24H | REG_B_PIE | REG_B_AIE);
  clock.advance(NS);
  rtc.pollTimers();
  assert.ok(irq.level);
  rtc.systemReset();
  assert.not.ok(irq.level);
  assert.is(cmos(RTC_REG_B), REG_B_24H);
  assert.is(cmos(RTC_REG_C), 0);
  assert.is(cmos(0x40), 0x77);
  assert.is(cmos(0x0f), 0);
  assert.is(cmos(RTC_SECONDS), 0x31);
});

test('rtc: a host clock that steps back does not replay or stall events', () => {
  const { clock, irq, rtc, cmos, setCmos } = machine('2024-02-29T13:45:30.250Z');
  setCmos(RTC_REG_A, 0x20); // periodic rate 0: only the flags under test appear in C
  setCmos(RTC_REG_B, REG_B_24H | REG_B_UIE);
  clock.advance(-3600n * NS);
  rtc.pollTimers();
  assert.not.ok(irq.level);
  clock.advance(750n * MS);
  rtc.pollTimers();
  assert.ok(irq.level);
  assert.is(cmos(RTC_REG_C), REG_C_IRQF | REG_C_UF);
});

test('rtc: reset refuses nonsense sizes', () => {
  const resetWith = (memory: RtcMemoryConfig) => () =>
    new Rtc(newRecord(rtcState), new RecordingIrq(), new FakeClock(0n), { memory }).reset();
  assert.throws(resetWith({ ramBelow4G: -1, ramAbove4G: 0, cpus: 1 }), /ramBelow4G/);
  assert.throws(resetWith({ ramBelow4G: 0, ramAbove4G: 0.5, cpus: 1 }), /ramAbove4G/);
});

test.run();
