import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { newRecord, makeRecord, recordBytes } from '../cpr/vmstate/vmstate.js';
import type { CharOut, HostClock, IrqLine } from '../src/bus/types.js';
import {
  Serial16550,
  serialState,
  type SerialState,
  UART_RBR,
  UART_THR,
  UART_DLL,
  UART_DLM,
  UART_IER,
  UART_IIR,
  UART_FCR,
  UART_LCR,
  UART_MCR,
  UART_LSR,
  UART_MSR,
  UART_SCR,
  IER_RDI,
  IER_THRI,
  IER_RLSI,
  IER_MSI,
  LCR_DLAB,
  MCR_LOOP,
  MCR_OUT2,
  MCR_DTR,
  MCR_RTS,
  LSR_DR,
  LSR_OE,
  LSR_THRE,
  LSR_TEMT,
  FCR_FE,
  FCR_RFR,
} from './serial.js';

class FakeIrq implements IrqLine {
  levels: boolean[] = [];
  get level(): boolean {
    return this.levels.at(-1) ?? false;
  }
  set(level: boolean): void {
    this.levels.push(level);
  }
  pulse(): void {
    throw new Error('the UART drives a level, it does not pulse');
  }
}

class FakeOut implements CharOut {
  bytes: number[] = [];
  writes = 0;
  write(bytes: Uint8Array): void {
    this.writes++;
    this.bytes.push(...bytes);
  }
  get text(): string {
    return String.fromCharCode(...this.bytes);
  }
}

class FakeClock implements HostClock {
  mono = 1_000_000_000n;
  real = 1_700_000_000_000_000_000n;
  monotonicNs(): bigint {
    return this.mono;
  }
  realtimeNs(): bigint {
    return this.real;
  }
}

function setup(options: { out2GatesIrq?: boolean; state?: SerialState } = {}) {
  const state = options.state ?? newRecord(serialState);
  const irq = new FakeIrq();
  const out = new FakeOut();
  const clock = new FakeClock();
  const uart = new Serial16550(state, { irq, out, clock, out2GatesIrq: options.out2GatesIrq });
  if (!options.state) uart.reset();
  irq.levels = []; // the reset's low line is not what a test looks at
  const rd = (reg: number) => uart.read(reg, 1);
  const wr = (reg: number, value: number) => uart.write(reg, 1, value);
  return { state, irq, out, clock, uart, rd, wr };
}

const bytes = (text: string) => new TextEncoder().encode(text);

test('serial: power-on registers match QEMU (9600 8N1, OUT2, THR empty, a ready peer)', () => {
  const { rd, wr } = setup();
  assert.is(rd(UART_IER), 0);
  assert.is(rd(UART_IIR), 0x01);
  assert.is(rd(UART_LCR), 0);
  assert.is(rd(UART_MCR), MCR_OUT2);
  assert.is(rd(UART_LSR), LSR_THRE | LSR_TEMT);
  assert.is(rd(UART_MSR), 0xb0);
  wr(UART_LCR, LCR_DLAB);
  assert.is(rd(UART_DLL), 12);
  assert.is(rd(UART_DLM), 0);
});

test('serial: DLAB switches offsets 0 and 1 to the divisor latch', () => {
  const { rd, wr, out, uart } = setup();
  wr(UART_IER, IER_RDI);
  wr(UART_LCR, LCR_DLAB | 0x03);
  wr(UART_DLL, 0x01);
  wr(UART_DLM, 0x02);
  assert.is(rd(UART_DLL), 0x01);
  assert.is(rd(UART_DLM), 0x02);
  assert.is(uart.read(UART_DLL, 2), 0x0201, 'a 2-byte read spans DLL and DLM');
  assert.equal(out.bytes, [], 'a DLL write does not transmit');
  wr(UART_LCR, 0x03);
  assert.is(rd(UART_IER), IER_RDI, 'IER survives DLAB');
  assert.is(rd(UART_LCR), 0x03);
  assert.is(uart.charTimeNs(), Math.round((1e9 / (115200 / 0x201)) * 10));
});

test('serial: a THR write is one CharOut write and leaves THRE and TEMT set', () => {
  const { rd, wr, out } = setup();
  for (const c of bytes('hi\n')) wr(UART_THR, c);
  assert.is(out.text, 'hi\n');
  assert.is(out.writes, 3);
  assert.is(rd(UART_LSR) & (LSR_THRE | LSR_TEMT), LSR_THRE | LSR_TEMT);
});

test('serial: received data sets LSR.DR until RBR is read', () => {
  const { rd, uart } = setup();
  assert.is(uart.receive(bytes('A')), 1);
  assert.is(rd(UART_LSR) & LSR_DR, LSR_DR);
  assert.is(rd(UART_RBR), 0x41);
  assert.is(rd(UART_LSR) & LSR_DR, 0);
});

test('serial: THRE interrupt is acknowledged by the IIR read that reports it and re-armed by THR writes', () => {
  const { rd, wr, irq } = setup();
  wr(UART_IER, IER_THRI);
  assert.is(irq.level, true, 'enabling THRI with THR empty raises the line');
  assert.is(rd(UART_IIR), 0x02);
  assert.is(irq.level, false);
  assert.is(rd(UART_IIR), 0x01, 'acknowledged');
  irq.levels = [];
  wr(UART_THR, 0x41);
  assert.equal(irq.levels, [true], 'the byte is sent at once: THR empty again');
  irq.levels = [];
  wr(UART_THR, 0x42);
  assert.equal(irq.levels, [false, true], 'each THR write makes a fresh edge while the line is high');
  assert.is(rd(UART_IIR), 0x02);
});

test('serial: toggling IER.THRI re-raises THRE after it was acknowledged', () => {
  const { rd, wr, irq } = setup();
  wr(UART_IER, IER_THRI);
  rd(UART_IIR);
  assert.is(irq.level, false);
  wr(UART_IER, IER_THRI); // unchanged: nothing happens
  assert.is(irq.level, false);
  wr(UART_IER, 0);
  wr(UART_IER, IER_THRI);
  assert.is(irq.level, true);
  assert.is(rd(UART_IIR), 0x02);
});

test('serial: IIR reports line status > received data > THR empty > modem status', () => {
  const { rd, wr, irq } = setup();
  wr(UART_MCR, MCR_LOOP | MCR_DTR); // loopback: DCD and CTS drop, so MSR gets delta bits
  wr(UART_THR, 0x61);
  wr(UART_THR, 0x62); // the first byte was never read: overrun
  wr(UART_IER, IER_RDI | IER_THRI | IER_RLSI | IER_MSI);
  assert.is(irq.level, true);
  assert.is(rd(UART_IIR), 0x06, 'receiver line status first');
  assert.is(rd(UART_LSR) & (LSR_OE | LSR_DR), LSR_OE | LSR_DR, 'LSR shows the overrun');
  assert.is(rd(UART_LSR) & LSR_OE, 0, 'reading LSR cleared it');
  assert.is(rd(UART_IIR), 0x04, 'then received data');
  assert.is(rd(UART_RBR), 0x62, 'the later byte overwrote RBR');
  assert.is(rd(UART_IIR), 0x02, 'then THR empty (this read acknowledges it)');
  assert.is(rd(UART_IIR), 0x00, 'then modem status');
  assert.is(irq.level, true);
  assert.is(rd(UART_MSR) & 0x0f, 0x08 | 0x01, 'DDCD and DCTS');
  assert.is(rd(UART_IIR), 0x01, 'reading MSR cleared the deltas');
  assert.is(irq.level, false);
});

test('serial: loopback mode echoes THR into RBR and wires modem outputs to inputs', () => {
  const { rd, wr, out, uart } = setup();
  wr(UART_MCR, MCR_LOOP | 0x0a); // Linux's probe: RTS + OUT2 looped back must read as CTS + DCD
  assert.is(rd(UART_MSR) & 0xf0, 0x90);
  wr(UART_THR, 0x5a);
  assert.equal(out.bytes, [], 'nothing reaches the line');
  assert.is(rd(UART_LSR) & LSR_DR, LSR_DR);
  assert.is(rd(UART_RBR), 0x5a);
  assert.is(uart.receive(bytes('x')), 0, 'the receiver listens to the transmitter, not the host');
  wr(UART_MCR, MCR_LOOP | MCR_DTR | 0x04);
  assert.is(rd(UART_MSR) & 0xf0, 0x60, 'DTR → DSR, OUT1 → RI');
  wr(UART_MCR, MCR_LOOP | MCR_DTR);
  assert.is(rd(UART_MSR) & 0x04, 0x04, 'RI falling sets TERI');
  wr(UART_MCR, MCR_OUT2 | MCR_DTR | MCR_RTS);
  assert.is(rd(UART_MSR) & 0xf0, 0xb0, 'leaving loopback reconnects the ready peer');
  wr(UART_THR, 0x21);
  assert.equal(out.bytes, [0x21]);
});

test('serial: FIFO mode reports 0xC0 in IIR and raises RDI at the trigger level', () => {
  const { rd, wr, uart, irq } = setup();
  wr(UART_FCR, FCR_FE | 0x40); // trigger at 4 bytes
  wr(UART_IER, IER_RDI);
  assert.is(rd(UART_IIR), 0xc1);
  assert.is(uart.receive(bytes('abc')), 3);
  assert.is(irq.level, false, 'below the trigger level');
  assert.is(uart.receive(bytes('d')), 1);
  assert.is(irq.level, true);
  assert.is(rd(UART_IIR), 0xc4);
  let text = '';
  while (rd(UART_LSR) & LSR_DR) text += String.fromCharCode(rd(UART_RBR));
  assert.is(text, 'abcd');
  assert.is(irq.level, false);
});

test('serial: data below the trigger level raises a character timeout after four character times', () => {
  const { rd, wr, uart, irq, clock } = setup();
  wr(UART_LCR, LCR_DLAB);
  wr(UART_DLL, 1);
  wr(UART_DLM, 0);
  wr(UART_LCR, 0x03); // 115200 8N1
  wr(UART_FCR, FCR_FE | 0xc0); // trigger at 14
  wr(UART_IER, IER_RDI);
  const fourChars = BigInt(4 * uart.charTimeNs());
  assert.is(uart.pollTimer(), null, 'nothing received, no timer');
  uart.receive(bytes('xyz'));
  const deadline = uart.pollTimer();
  assert.is(deadline, clock.mono + fourChars);
  clock.mono += fourChars - 1n;
  assert.is(uart.pollTimer(), deadline, 'not yet');
  assert.is(irq.level, false);
  clock.mono += 1n;
  assert.is(uart.pollTimer(), null);
  assert.is(irq.level, true);
  assert.is(rd(UART_IIR), 0xcc);
  assert.is(rd(UART_RBR), 0x78);
  assert.is(irq.level, false, 'reading RBR clears the timeout');
  assert.is(uart.pollTimer(), clock.mono + fourChars, 'bytes remain: the timeout restarts');
  clock.mono += fourChars;
  // A guest that only polls IIR sees the timeout without the machine's timer.
  assert.is(rd(UART_IIR), 0xcc);
  assert.is(rd(UART_RBR), 0x79);
  assert.is(rd(UART_RBR), 0x7a);
  assert.is(uart.pollTimer(), null, 'FIFO empty: no timer');
  assert.is(rd(UART_IIR), 0xc1);
});

test('serial: host input beyond the RX FIFO is not taken', () => {
  const { rd, wr, uart } = setup();
  wr(UART_FCR, FCR_FE);
  const input = bytes('0123456789abcdefXYZ');
  assert.is(uart.canReceive(), 16);
  assert.is(uart.receive(input), 16);
  assert.is(uart.receive(input.subarray(16)), 0);
  assert.is(rd(UART_LSR) & LSR_OE, 0, 'refusing input is not an overrun');
  assert.is(rd(UART_RBR), 0x30);
  assert.is(uart.receive(input.subarray(16)), 1);
  let text = '';
  while (rd(UART_LSR) & LSR_DR) text += String.fromCharCode(rd(UART_RBR));
  assert.is(text, '123456789abcdefX');
});

test('serial: without the FIFO only one byte is taken until RBR is read', () => {
  const { rd, uart } = setup();
  assert.is(uart.receive(bytes('ab')), 1);
  assert.is(uart.receive(bytes('b')), 0);
  assert.is(rd(UART_RBR), 0x61);
  assert.is(uart.receive(bytes('b')), 1);
  assert.is(rd(UART_RBR), 0x62);
});

test('serial: FCR receive-clear empties the FIFO and LSR.DR', () => {
  const { rd, wr, uart } = setup();
  wr(UART_FCR, FCR_FE);
  uart.receive(bytes('abc'));
  wr(UART_FCR, FCR_FE | FCR_RFR);
  assert.is(rd(UART_LSR) & LSR_DR, 0);
  assert.is(uart.canReceive(), 16);
  assert.is(rd(UART_RBR), 0, 'an empty FIFO reads 0');
  uart.receive(bytes('q'));
  wr(UART_FCR, 0); // disabling the FIFO flushes it too
  assert.is(rd(UART_LSR) & LSR_DR, 0);
  assert.is(rd(UART_IIR), 0x01);
});

test('serial: a full FIFO in loopback sets overrun and keeps its contents', () => {
  const { rd, wr } = setup();
  wr(UART_FCR, FCR_FE);
  wr(UART_MCR, MCR_LOOP);
  for (let i = 0; i < 17; i++) wr(UART_THR, 0x40 + i);
  assert.is(rd(UART_LSR) & (LSR_OE | LSR_DR), LSR_OE | LSR_DR);
  const got: number[] = [];
  while (rd(UART_LSR) & LSR_DR) got.push(rd(UART_RBR));
  assert.equal(
    got,
    Array.from({ length: 16 }, (_, i) => 0x40 + i),
  );
});

test('serial: the IRQ line follows IER and the pending interrupt', () => {
  const { rd, wr, uart, irq } = setup();
  uart.receive(bytes('a'));
  assert.equal(irq.levels, [], 'data pending but RDI disabled: the line stays low');
  wr(UART_IER, IER_RDI);
  assert.equal(irq.levels, [true]);
  wr(UART_IER, 0);
  assert.equal(irq.levels, [true, false]);
  wr(UART_IER, IER_RDI);
  rd(UART_RBR);
  assert.equal(irq.levels, [true, false, true, false]);
});

test('serial: the IRQ is raised regardless of OUT2 by default, as in QEMU', () => {
  const { wr, irq } = setup();
  wr(UART_MCR, 0);
  wr(UART_IER, IER_THRI);
  assert.is(irq.level, true);
});

test('serial: with out2GatesIrq, OUT2 gates the line as on a PC board, and loopback disconnects it', () => {
  const { wr, irq } = setup({ out2GatesIrq: true });
  wr(UART_MCR, 0);
  wr(UART_IER, IER_THRI);
  assert.equal(irq.levels, [], 'pending, but OUT2 is off');
  wr(UART_MCR, MCR_OUT2);
  assert.equal(irq.levels, [true]);
  wr(UART_MCR, MCR_OUT2 | MCR_LOOP);
  assert.equal(irq.levels, [true, false]);
});

test('serial: LSR and MSR writes are ignored; SCR holds any byte', () => {
  const { rd, wr } = setup();
  wr(UART_LSR, 0x00);
  wr(UART_MSR, 0x00);
  wr(UART_SCR, 0xa5);
  assert.is(rd(UART_LSR), LSR_THRE | LSR_TEMT);
  assert.is(rd(UART_MSR), 0xb0);
  assert.is(rd(UART_SCR), 0xa5);
});

test('serial: instances on different threads share one record', () => {
  const a = setup();
  const b = setup({ state: makeRecord(serialState, a.state.$buffer, a.state.$offset) });
  a.wr(UART_SCR, 0x77);
  a.wr(UART_FCR, FCR_FE);
  a.uart.receive(bytes('hey'));
  assert.is(b.rd(UART_SCR), 0x77);
  assert.is(b.rd(UART_RBR), 0x68);
  assert.is(a.rd(UART_RBR), 0x65);
});

test('serial: a state record restored into a new instance behaves identically', () => {
  const a = setup();
  a.wr(UART_LCR, LCR_DLAB);
  a.wr(UART_DLL, 3);
  a.wr(UART_LCR, 0x1b);
  a.wr(UART_FCR, FCR_FE | 0x80);
  a.wr(UART_IER, IER_RDI | IER_THRI);
  a.wr(UART_MCR, MCR_OUT2 | MCR_RTS);
  a.wr(UART_SCR, 0x3c);
  a.uart.receive(bytes('restore me'));
  a.rd(UART_RBR);
  // Checkpoint: copy the bytes of the record into a buffer of a "new process".
  const copy = new SharedArrayBuffer(a.state.$buffer.byteLength);
  new Uint8Array(copy).set(recordBytes(a.state), a.state.$offset);
  const b = setup({ state: makeRecord(serialState, copy, a.state.$offset) });
  b.uart.restored();
  assert.equal(b.irq.levels, [true], 'restored() drives the line from the state');
  assert.is(b.uart.pollTimer(), b.clock.mono + BigInt(4 * b.uart.charTimeNs()), 'the running timeout is re-based');
  const sequence = [UART_IIR, UART_LSR, UART_MSR, UART_LCR, UART_MCR, UART_SCR, UART_IER, UART_IIR];
  for (let i = 0; i < 12; i++) sequence.push(UART_LSR, UART_RBR);
  sequence.push(UART_IIR, UART_IIR, UART_LSR);
  const readAll = (s: ReturnType<typeof setup>) => sequence.map((reg) => s.rd(reg));
  assert.equal(readAll(b), readAll(a));
  a.wr(UART_LCR, LCR_DLAB);
  b.wr(UART_LCR, LCR_DLAB);
  assert.equal([b.rd(UART_DLL), b.rd(UART_DLM)], [a.rd(UART_DLL), a.rd(UART_DLM)]);
});

test('serial: reset() restores power-on state and lowers the line', () => {
  const { rd, wr, uart, irq } = setup();
  wr(UART_IER, IER_THRI);
  wr(UART_SCR, 1);
  uart.reset();
  assert.is(irq.level, false);
  assert.is(rd(UART_IER), 0);
  assert.is(rd(UART_SCR), 0);
  assert.is(rd(UART_LSR), LSR_THRE | LSR_TEMT);
});

test('serial: wide accesses act on consecutive registers', () => {
  const { uart, rd } = setup();
  uart.write(UART_LCR, 2, 0x08_03); // LCR = 3, MCR = 8
  assert.is(rd(UART_LCR), 0x03);
  assert.is(rd(UART_MCR), 0x08);
  assert.is(uart.read(UART_SCR, 2), 0xff00, 'beyond the 8 registers reads 0xff');
});

test.run();
