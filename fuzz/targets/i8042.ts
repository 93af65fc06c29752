// The i8042 keyboard controller (devices/i8042.ts): any sequence of guest reads and writes of its data and command
// ports, and of scancodes from the host, never throws (a reset or A20 request goes to the machine, not an error).
import { newRecord } from '../../cpr/vmstate/vmstate.js';
import { I8042, i8042State } from '../../devices/i8042.js';
import { ByteScript } from '../support/bytes.js';
import { playRegisters, quietIrq, quietMachine } from '../support/register-script.js';

export const instrumented = ['devices/i8042.js'];

export function fuzz(data: Uint8Array): void {
  const dev = new I8042(newRecord(i8042State), { kbdIrq: quietIrq, auxIrq: quietIrq, machine: quietMachine });
  dev.reset();
  const [dataPort, commandPort] = dev.regions().map((r) => r.handler);
  playRegisters(
    new ByteScript(data),
    {
      read: (offset, size) => (offset === 0 ? dataPort : commandPort).read(0, size),
      write: (offset, size, value) => (offset === 0 ? dataPort : commandPort).write(0, size, value),
    },
    { span: 2, sizes: [1], hostEvent: (s) => dev.pushScancodes(s.bytes(s.u8() % 16)) },
  );
}

export const seeds = (): Uint8Array[] => [
  // self-test (0xAA), read result; read/write the command byte (0x20/0x60); keyboard reset (0xFF); read OBF
  Uint8Array.from([1, 1, 0xaa, 0, 0, 0, 1, 1, 1, 0x20, 0, 0, 1, 1, 0x60, 1, 0, 0x47, 1, 0, 0xff, 0, 0, 0, 1]),
  // enable aux (0xA8), write to aux (0xD4) a reset; scancodes from the host; pulse the reset line (0xFE)
  Uint8Array.from([1, 1, 0xa8, 1, 1, 0xd4, 1, 0, 0xff, 0, 0, 2, 0, 3, 0x1e, 0x9e, 0x1c, 0, 0, 0, 0, 1, 1, 0xfe]),
];
