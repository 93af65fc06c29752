// The MC146818 RTC and CMOS (devices/rtc.ts): any sequence of index/data port accesses, with time passing and the
// timers polled, never throws (invalid BCD, odd register values and alarms included).
import { newRecord } from '../../cpr/vmstate/vmstate.js';
import { Rtc, rtcState } from '../../devices/rtc.js';
import { MiB } from '../../src/util/sizes.js';
import { ByteScript } from '../support/bytes.js';
import { ScriptClock, playRegisters, quietIrq } from '../support/register-script.js';

export const instrumented = ['devices/rtc.js'];

export function fuzz(data: Uint8Array): void {
  const clock = new ScriptClock();
  const rtc = new Rtc(newRecord(rtcState), quietIrq, clock, {
    memory: { ramBelow4G: 128 * MiB, ramAbove4G: 0, cpus: 2 },
  });
  rtc.reset();
  playRegisters(new ByteScript(data), rtc, {
    span: 2,
    sizes: [1, 1, 1, 2],
    hostEvent(s) {
      const step = s.u8();
      if (step & 1) rtc.systemReset();
      else clock.advance(BigInt(s.u32()) << BigInt(step >> 4));
      rtc.pollTimers();
    },
  });
}

export const seeds = (): Uint8Array[] => [
  // read seconds, minutes, hours, register A, B, C, D, the century
  Uint8Array.from([
    1, 0, 0, 0, 1, 1, 0, 2, 0, 1, 4, 0, 1, 1, 10, 0, 1, 1, 11, 0, 1, 1, 12, 0, 1, 1, 13, 0, 1, 1, 0x32, 0, 1,
  ]),
  // register B: SET, binary, 24h; set the time; periodic + alarm + update interrupts; let time pass
  Uint8Array.from([
    1, 0, 11, 1, 1, 0x86, 1, 0, 0, 1, 1, 0x59, 1, 0, 11, 1, 1, 0x72, 1, 0, 10, 1, 1, 0x26, 2, 0, 0, 0xca, 0x9a, 0x3b, 1,
    0, 12, 0, 1,
  ]),
];
