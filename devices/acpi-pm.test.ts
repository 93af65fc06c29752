import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { makeRecord, newRecord, recordBytes } from '../cpr/vmstate/vmstate.js';
import type { HostClock, IrqLine } from '../src/bus/types.js';
import {
  AcpiPm,
  acpiPmPorts,
  acpiPmState,
  ACPI_PM_IO_LENGTH,
  PM_TIMER_HZ,
  PM1_CNT_SCI_EN,
  PM1_CNT_SLP_EN,
  PM1_CNT_SLP_TYP_SHIFT,
  PM1_EN_PWRBTN,
  PM1_EN_RTC,
  PM1_EN_TMR,
  PM1_STS_PWRBTN,
  PM1_STS_RTC,
  PM1_STS_TMR,
  PM1_STS_WAK,
  SLP_TYP_S3,
  SLP_TYP_S5,
  type SleepControl,
} from './acpi-pm.js';

const STS = 0x00;
const EN = 0x02;
const CNT = 0x04;
const TMR = 0x08;
const NS = 1_000_000_000n;

class FakeClock implements HostClock {
  constructor(public now = 5n * NS) {}
  realtimeNs(): bigint {
    return this.now;
  }
  monotonicNs(): bigint {
    return this.now;
  }
}

class RecordingIrq implements IrqLine {
  level = false;
  raises = 0;
  set(level: boolean): void {
    if (level && !this.level) this.raises++;
    this.level = level;
  }
  pulse(): void {
    throw new Error('the SCI is level-triggered: pulse() must not be used');
  }
}

class RecordingSleep implements SleepControl {
  calls: string[] = [];
  powerOff(reason: string): void {
    this.calls.push(`off: ${reason}`);
  }
  suspend(reason: string): void {
    this.calls.push(`suspend: ${reason}`);
  }
}

function machine() {
  const clock = new FakeClock();
  const sci = new RecordingIrq();
  const sleep = new RecordingSleep();
  const state = newRecord(acpiPmState);
  let scheduleChanges = 0;
  const pm = new AcpiPm(state, { sci, clock, sleep, onScheduleChange: () => scheduleChanges++ });
  pm.reset();
  return { clock, sci, sleep, state, pm, scheduleChanges: () => scheduleChanges };
}

const slp = (typ: number, enable: boolean) =>
  (typ << PM1_CNT_SLP_TYP_SHIFT) | (enable ? PM1_CNT_SLP_EN : 0) | PM1_CNT_SCI_EN;

test('acpi-pm: power-on: no status, nothing enabled, SCI_EN set (ACPI always on), SCI low', () => {
  const { pm, sci } = machine();
  assert.is(pm.read(STS, 2), 0);
  assert.is(pm.read(EN, 2), 0);
  assert.is(pm.read(CNT, 2), PM1_CNT_SCI_EN);
  assert.is(sci.level, false);
  assert.equal(
    pm.regions(0x600).map((r) => [r.space, r.base, r.length]),
    [['pio', 0x600, ACPI_PM_IO_LENGTH]],
  );
  assert.equal(acpiPmPorts(0x600), { pm1aEvt: 0x600, pm1aCnt: 0x604, pmTmr: 0x608 });
  assert.throws(() => acpiPmPorts(0xfff8));
});

test('acpi-pm: PM1_STS bits are write-1-to-clear; writing 0 changes nothing', () => {
  const { pm } = machine();
  pm.powerButton();
  pm.wake();
  assert.is(pm.read(STS, 2), PM1_STS_PWRBTN | PM1_STS_WAK);
  pm.write(STS, 2, 0);
  assert.is(pm.read(STS, 2), PM1_STS_PWRBTN | PM1_STS_WAK);
  pm.write(STS, 2, PM1_STS_WAK);
  assert.is(pm.read(STS, 2), PM1_STS_PWRBTN);
  pm.write(STS + 1, 1, PM1_STS_PWRBTN >> 8); // a byte write to the high half clears only its bits
  assert.is(pm.read(STS, 2), 0);
  pm.write(STS, 2, 0xffff); // status bits cannot be set by the guest
  assert.is(pm.read(STS, 2), 0);
});

test('acpi-pm: the power button raises the SCI only when PWRBTN_EN and SCI_EN are set; clearing the status drops it', () => {
  const { pm, sci } = machine();
  assert.is(pm.powerButton(), false); // not enabled: the status is latched, no SCI
  assert.is(sci.level, false);
  assert.is(pm.read(STS, 2) & PM1_STS_PWRBTN, PM1_STS_PWRBTN);
  pm.write(EN, 2, PM1_EN_PWRBTN); // enabling with the status pending raises it
  assert.is(sci.level, true);
  pm.write(STS, 2, PM1_STS_PWRBTN);
  assert.is(sci.level, false);
  assert.is(pm.powerButton(), true);
  assert.is(sci.raises, 2);
  pm.write(CNT, 2, 0); // SCI_EN clear masks the SCI
  assert.is(sci.level, false);
  pm.write(CNT, 2, PM1_CNT_SCI_EN);
  assert.is(sci.level, true);
  pm.write(EN, 2, 0);
  assert.is(sci.level, false);
});

test('acpi-pm: a dword read at PM1a_EVT returns PM1_STS in the low word and PM1_EN in the high word', () => {
  const { pm } = machine();
  pm.write(EN, 2, PM1_EN_PWRBTN | PM1_EN_TMR | 0x8000); // bit 15 is not an enable bit: ignored
  pm.powerButton();
  assert.is(pm.read(STS, 4), (((PM1_EN_PWRBTN | PM1_EN_TMR) << 16) | PM1_STS_PWRBTN) >>> 0);
  assert.is(pm.read(0x06, 2), 0); // the reserved word
  pm.write(STS, 4, 0x00000000 | PM1_STS_PWRBTN); // a dword write: clears PWRBTN_STS, disables everything
  assert.is(pm.read(STS, 4), 0);
});

test('acpi-pm: the PM timer counts 3,579,545 ticks per second of host monotonic time, 32 bits wide, read-only', () => {
  const { pm, clock } = machine();
  assert.is(pm.read(TMR, 4), 0);
  clock.now += NS;
  assert.is(pm.read(TMR, 4), PM_TIMER_HZ);
  clock.now += 1_000n; // 1 µs: 3.58 ticks
  assert.is(pm.read(TMR, 4), PM_TIMER_HZ + 3);
  pm.write(TMR, 4, 0);
  assert.is(pm.read(TMR, 4), PM_TIMER_HZ + 3);
  const lo = pm.read(TMR, 2);
  const hi = pm.read(TMR + 2, 2);
  assert.is(hi * 0x10000 + lo, PM_TIMER_HZ + 3);
  // 2^32 ticks is 1199.86 s: the counter wraps.
  clock.now = 5n * NS + (2n ** 32n * NS) / BigInt(PM_TIMER_HZ) + NS;
  const v = pm.read(TMR, 4);
  assert.ok(v >= PM_TIMER_HZ - 1 && v <= PM_TIMER_HZ + 1, `wrapped value ${v}`);
});

test("acpi-pm: TMR_STS sets when the counter's bit 31 flips; with TMR_EN it raises the SCI; pollTimers says when", () => {
  const { pm, clock, sci, scheduleChanges } = machine();
  assert.is(pm.pollTimers(), null); // TMR_EN clear: no deadline
  const before = scheduleChanges();
  pm.write(EN, 2, PM1_EN_TMR);
  assert.is(scheduleChanges(), before + 1);
  const ms = pm.pollTimers()!;
  assert.ok(Math.abs(ms - (2 ** 31 / PM_TIMER_HZ) * 1000) < 1, `first TMR_STS in ${ms} ms`);
  clock.now += BigInt(Math.floor(ms * 1e6)) - 1_000n; // just before: nothing yet
  assert.is(pm.pollTimers()! > 0, true);
  assert.is(pm.read(STS, 2) & PM1_STS_TMR, 0);
  clock.now += 2_000n; // just after
  assert.is(pm.read(STS, 2) & PM1_STS_TMR, PM1_STS_TMR);
  assert.is(sci.level, true);
  pm.write(STS, 2, PM1_STS_TMR);
  assert.is(sci.level, false);
  assert.ok(Math.abs(pm.pollTimers()! - (2 ** 31 / PM_TIMER_HZ) * 1000) < 1);
});

test('acpi-pm: SLP_EN with SLP_TYP=S5 powers off; with S3 suspends; SLP_TYP alone or an unknown type does nothing', () => {
  const { pm, sleep } = machine();
  pm.write(CNT, 2, slp(SLP_TYP_S5, false)); // Linux writes SLP_TYP first …
  assert.equal(sleep.calls, []);
  pm.write(CNT, 2, slp(SLP_TYP_S5, true)); // … then SLP_TYP | SLP_EN
  assert.equal(sleep.calls.length, 1);
  assert.match(sleep.calls[0], /^off: ACPI S5/);
  assert.is(pm.read(CNT, 2), slp(SLP_TYP_S5, false)); // SLP_EN is write-only
  pm.write(CNT, 2, slp(SLP_TYP_S3, true));
  assert.match(sleep.calls[1], /^suspend: ACPI S3/);
  pm.write(CNT, 2, slp(2, true)); // S4 is not offered
  pm.write(CNT, 2, slp(7, true));
  assert.is(sleep.calls.length, 2);
  pm.write(CNT + 1, 1, slp(SLP_TYP_S3, true) >> 8); // a byte write to the high half works too
  assert.is(sleep.calls.length, 3);
  assert.is(pm.read(CNT, 2) & PM1_CNT_SCI_EN, PM1_CNT_SCI_EN); // the low byte was not touched
});

test('acpi-pm: waking sets WAK_STS (and PWRBTN_STS for a button wake); the SCI follows PWRBTN_EN', () => {
  const { pm, sci } = machine();
  pm.write(EN, 2, PM1_EN_PWRBTN);
  pm.wake('user');
  assert.is(pm.read(STS, 2), PM1_STS_WAK);
  assert.is(sci.level, false); // WAK_STS has no enable: no SCI
  pm.write(STS, 2, PM1_STS_WAK);
  pm.wake('powerButton');
  assert.is(pm.read(STS, 2), PM1_STS_WAK | PM1_STS_PWRBTN);
  assert.is(sci.level, true);
});

test('acpi-pm: the RTC alarm may wake the guest only once it set RTC_EN; that wake sets WAK_STS and RTC_STS, and RTC_EN raises the SCI', () => {
  const { pm, sci } = machine();
  assert.not.ok(pm.wakeEnabled('rtc'), 'RTC_EN is clear at power-on');
  pm.write(EN, 2, PM1_EN_RTC);
  assert.ok(pm.wakeEnabled('rtc'));
  pm.wake('rtc');
  assert.is(pm.read(STS, 2), PM1_STS_WAK | PM1_STS_RTC);
  assert.is(sci.level, true, 'RTC_STS with RTC_EN is an SCI event');
  pm.write(STS, 2, PM1_STS_WAK | PM1_STS_RTC);
  assert.is(pm.read(STS, 2), 0);
  assert.is(sci.level, false);
  pm.write(EN, 2, 0);
  assert.not.ok(pm.wakeEnabled('rtc'));
});

test('acpi-pm: the state is the record: another instance over a copy sees the same registers, restored() re-drives the SCI', () => {
  const { pm, state, clock } = machine();
  pm.write(EN, 2, PM1_EN_PWRBTN);
  pm.powerButton();
  clock.now += 2n * NS;
  const copy = new SharedArrayBuffer(recordBytes(state).length);
  new Uint8Array(copy).set(recordBytes(state));
  const restoredState = makeRecord(acpiPmState, copy);
  const sci = new RecordingIrq();
  const other = new AcpiPm(restoredState, { sci, clock, sleep: new RecordingSleep() });
  other.restored();
  assert.is(sci.level, true);
  assert.is(other.read(STS, 2), PM1_STS_PWRBTN);
  assert.is(other.read(EN, 2), PM1_EN_PWRBTN);
  assert.is(other.read(TMR, 4), pm.read(TMR, 4));
  assert.is(other.read(TMR, 4), 2 * PM_TIMER_HZ);
  other.reset();
  assert.is(sci.level, false);
  assert.is(other.read(STS, 2), 0);
  assert.is(other.read(TMR, 4), 0);
});

test.run();
