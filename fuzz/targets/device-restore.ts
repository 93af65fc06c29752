// Device records restored from a checkpoint's stream (cpr/vmstate/stream.ts decodeInto, postLoad included), then
// the device restored and driven as a guest would — the UART, the RTC and the i8042, whose records hold FIFO
// indices, counts and register values a damaged or hostile checkpoint controls. A stream is either refused with a
// SetupError (VmstateError, or whatever a postLoad check throws) or yields a device that no access makes throw.
// Input: which device, the stream's length (u16), the stream, then a register script (support/register-script.ts).
import { decodeInto, encodeRecord } from '../../cpr/vmstate/stream.js';
import { type Descriptor, newRecord, type StateOf } from '../../cpr/vmstate/vmstate.js';
import { I8042, i8042State } from '../../devices/i8042.js';
import { Rtc, rtcState } from '../../devices/rtc.js';
import { Serial16550, serialState } from '../../devices/serial.js';
import { MiB } from '../../src/util/sizes.js';
import { SetupError } from '../../src/util/setup-error.js';
import { ByteScript } from '../support/bytes.js';
import { refusedOnlyWith } from '../support/contract.js';
import { ScriptClock, discardOut, playRegisters, quietIrq, quietMachine } from '../support/register-script.js';

export const instrumented = ['devices/serial.js', 'devices/rtc.js', 'devices/i8042.js', 'cpr/vmstate/'];

const DEVICES = [serialState, rtcState, i8042State] as const;

/** The record decoded from `stream`, or null when the stream was refused. */
function restore<D extends Descriptor>(descriptor: D, stream: Uint8Array): StateOf<D> | null {
  const record = newRecord(descriptor);
  const refused = refusedOnlyWith([SetupError], () => decodeInto(descriptor, stream, descriptor.version, record));
  return refused ? null : record;
}

export function fuzz(data: Uint8Array): void {
  const s = new ByteScript(data);
  const which = s.u8() % DEVICES.length;
  const stream = s.bytes(s.u16());
  const script = new ByteScript(s.rest());
  const clock = new ScriptClock();
  if (which === 0) {
    const state = restore(serialState, stream);
    if (!state) return;
    const uart = new Serial16550(state, { irq: quietIrq, out: discardOut, clock });
    uart.restored();
    playRegisters(script, uart, {
      span: 8,
      sizes: [1],
      hostEvent(x) {
        uart.receive(x.bytes(x.u8() % 64));
        clock.advance(BigInt(x.u32()));
        uart.pollTimer();
      },
    });
  } else if (which === 1) {
    const state = restore(rtcState, stream);
    if (!state) return;
    const rtc = new Rtc(state, quietIrq, clock, { memory: { ramBelow4G: 128 * MiB, ramAbove4G: 0, cpus: 2 } });
    rtc.restored();
    playRegisters(script, rtc, {
      span: 2,
      sizes: [1],
      hostEvent(x) {
        clock.advance(BigInt(x.u32()) * 1000n);
        rtc.pollTimers();
      },
    });
  } else {
    const state = restore(i8042State, stream);
    if (!state) return;
    const dev = new I8042(state, { kbdIrq: quietIrq, auxIrq: quietIrq, machine: quietMachine });
    dev.restored();
    const [dataPort, commandPort] = dev.regions().map((r) => r.handler);
    playRegisters(
      script,
      {
        read: (offset, size) => (offset === 0 ? dataPort : commandPort).read(0, size),
        write: (offset, size, value) => (offset === 0 ? dataPort : commandPort).write(0, size, value),
      },
      { span: 2, sizes: [1], hostEvent: (x) => dev.pushScancodes(x.bytes(8)) },
    );
  }
}

/** Each device's power-on record as its stream, then a few reads. */
export const seeds = (): Uint8Array[] =>
  DEVICES.map((descriptor, i) => {
    const stream = encodeRecord(descriptor, newRecord(descriptor) as StateOf<typeof descriptor>);
    return Uint8Array.from([i, stream.length & 0xff, stream.length >> 8, ...stream, 0, 0, 0, 1, 0, 5]);
  });
