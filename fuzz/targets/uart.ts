// The 16550 UART's register file (devices/serial.ts) as a guest driver and the host side see it: any sequence of
// reads and writes of its eight registers, host input arriving and time passing never throws.
import { newRecord } from '../../cpr/vmstate/vmstate.js';
import { Serial16550, serialState } from '../../devices/serial.js';
import { ByteScript } from '../support/bytes.js';
import { ScriptClock, discardOut, playRegisters, quietIrq } from '../support/register-script.js';

export const instrumented = ['devices/serial.js'];

export function fuzz(data: Uint8Array): void {
  const script = new ByteScript(data);
  const clock = new ScriptClock();
  const uart = new Serial16550(newRecord(serialState), {
    irq: quietIrq,
    out: discardOut,
    clock,
    out2GatesIrq: script.u8() & 1 ? true : undefined,
  });
  uart.reset();
  playRegisters(script, uart, {
    span: 8,
    sizes: [1, 1, 1, 2, 4],
    hostEvent(s) {
      const event = s.u8();
      if (event & 1) uart.receive(s.bytes(s.u8() % 64));
      else clock.advance(BigInt(s.u32()) * 100n);
      uart.pollTimer();
      uart.canReceive();
    },
  });
}

export const seeds = (): Uint8Array[] => [
  // LCR: DLAB on, divisor 1, DLAB off 8N1, FIFO on, IER all, MCR loop, write THR, read LSR, RBR, IIR
  Uint8Array.from([
    0, 1, 3, 0x80, 1, 0, 1, 1, 1, 0, 1, 3, 3, 1, 2, 0xc7, 1, 1, 0x0f, 1, 4, 0x1b, 1, 0, 0x41, 0, 5, 0, 0, 0, 2,
  ]),
  // host input then reads, with time passing
  Uint8Array.from([
    1, 1, 1, 0x01, 2, 0, 1, 5, 0x61, 0x62, 0x63, 0x64, 0x65, 0, 5, 0, 0, 0, 0, 2, 0, 0x10, 0x27, 0, 0, 0, 2,
  ]),
];
