import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { makeRecord, newRecord, recordBytes } from '../cpr/vmstate/vmstate.js';
import type { IrqLine, MachineControl } from '../src/bus/types.js';
import {
  I8042,
  i8042State,
  STAT_OBF,
  STAT_AUX_OBF,
  STAT_SELFTEST,
  STAT_UNLOCKED,
  STAT_CMD,
  MODE_KBD_INT,
  MODE_AUX_INT,
  MODE_KCC,
  OUT_A20,
  OUT_RESET,
} from './i8042.js';

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

class RecordingMachine implements MachineControl {
  resets: string[] = [];
  exit(): void {
    throw new Error('unexpected exit');
  }
  reset(reason: string): void {
    this.resets.push(reason);
  }
  powerOff(): void {
    throw new Error('unexpected power-off');
  }
  suspend(): void {
    throw new Error('unexpected suspend');
  }
  wakeEvent(): void {
    throw new Error('unexpected wake-up event');
  }
}

function machine() {
  const state = newRecord(i8042State);
  const kbd = new RecordingIrq();
  const aux = new RecordingIrq();
  const control = new RecordingMachine();
  const dev = new I8042(state, { kbdIrq: kbd, auxIrq: aux, machine: control });
  dev.reset();
  const [dataRegion, cmdRegion] = dev.regions();
  const inb = (port: 0x60 | 0x64) => (port === 0x60 ? dataRegion : cmdRegion).handler.read(0, 1);
  const outb = (port: 0x60 | 0x64, v: number) => (port === 0x60 ? dataRegion : cmdRegion).handler.write(0, 1, v);
  /** Every byte the guest can read now, polling status like a driver does. */
  const drain = () => {
    const out: number[] = [];
    while (inb(0x64) & STAT_OBF) out.push(inb(0x60));
    return out;
  };
  return { state, kbd, aux, control, dev, inb, outb, drain };
}

test('i8042: the windows are 0x60 and 0x64 only, leaving 0x61-0x63 to others', () => {
  const { dev } = machine();
  assert.equal(
    dev.regions().map((r) => [r.space, r.base, r.length]),
    [
      ['pio', 0x60, 1],
      ['pio', 0x64, 1],
    ],
  );
});

test('i8042: power-on status is "unlocked, last write a command" with nothing to read', () => {
  const { inb } = machine();
  assert.is(inb(0x64), STAT_UNLOCKED | STAT_CMD);
});

test('i8042: self test 0xAA replies 0x55 and sets the system flag', () => {
  const { inb, outb, drain } = machine();
  outb(0x64, 0xaa);
  assert.ok(inb(0x64) & STAT_OBF);
  assert.equal(drain(), [0x55]);
  assert.ok(inb(0x64) & STAT_SELFTEST);
});

test('i8042: interface tests 0xAB and 0xA9 reply 0x00', () => {
  const { outb, drain } = machine();
  outb(0x64, 0xab);
  assert.equal(drain(), [0x00]);
  outb(0x64, 0xa9);
  assert.equal(drain(), [0x00]);
});

test('i8042: the command byte round-trips through 0x60 and 0x20', () => {
  const { outb, drain } = machine();
  outb(0x64, 0x20);
  assert.equal(drain(), [MODE_KBD_INT | MODE_AUX_INT], "QEMU's power-on command byte");
  outb(0x64, 0x60);
  outb(0x60, 0x65);
  outb(0x64, 0x20);
  assert.equal(drain(), [0x65]);
});

test('i8042: 0xAD/0xAE and 0xA7/0xA8 set and clear the port-disable bits of the command byte', () => {
  const { outb, drain } = machine();
  const mode = () => {
    outb(0x64, 0x20);
    return drain()[0];
  };
  outb(0x64, 0xad);
  assert.is(mode() & 0x10, 0x10);
  outb(0x64, 0xa7);
  assert.is(mode() & 0x20, 0x20);
  outb(0x64, 0xae);
  assert.is(mode() & 0x10, 0);
  outb(0x64, 0xa8);
  assert.is(mode() & 0x20, 0);
});

test('i8042: keyboard reset 0xFF replies ACK then self-test passed (0xFA 0xAA)', () => {
  const { outb, drain } = machine();
  outb(0x60, 0xff);
  assert.equal(drain(), [0xfa, 0xaa]);
});

test('i8042: keyboard identify, echo, LEDs, scan code set and scanning commands answer like an MF2 keyboard', () => {
  const { outb, drain } = machine();
  /** One byte to the keyboard, then everything it answered (a driver waits for each ACK). */
  const send = (b: number) => {
    outb(0x60, b);
    return drain();
  };
  assert.equal(send(0xf2), [0xfa, 0xab, 0x83], 'untranslated ID');
  outb(0x64, 0x60);
  outb(0x60, MODE_KBD_INT | MODE_KCC);
  assert.equal(send(0xf2), [0xfa, 0xab, 0x41], 'ID seen through translation');
  assert.equal(send(0xee), [0xee]);
  assert.equal(send(0xed), [0xfa]);
  assert.equal(send(0x07), [0xfa], 'LED byte acknowledged');
  assert.equal(send(0xf0), [0xfa]);
  assert.equal(send(0x00), [0xfa, 0x41], 'set 2, as a translating controller reports it');
  assert.equal(send(0xf0), [0xfa]);
  assert.equal(send(0x01), [0xfa]);
  outb(0x64, 0x60);
  outb(0x60, MODE_KBD_INT);
  assert.equal(send(0xf0), [0xfa]);
  assert.equal(send(0x00), [0xfa, 0x01], 'set 1 selected above');
  assert.equal(send(0xf0), [0xfa]);
  assert.equal(send(0x09), [0xfe], 'no set 9: resend');
  assert.equal(send(0xf3), [0xfa]);
  assert.equal(send(0x20), [0xfa], 'typematic rate acknowledged');
  assert.equal(send(0xf5), [0xfa], 'reset and disable scanning');
  assert.equal(send(0xf4), [0xfa], 'enable scanning');
  assert.equal(send(0x42), [0xfe], 'unknown command: resend');
});

test('i8042: a new keyboard command discards unread replies to the previous one', () => {
  const { outb, inb, drain } = machine();
  outb(0x60, 0xf2);
  assert.is(inb(0x60), 0xfa);
  outb(0x60, 0xee); // 0xAB 0x83 never read
  assert.equal(drain(), [0xee]);
});

test('i8042: reading 0x60 with nothing new returns the last byte again', () => {
  const { outb, inb } = machine();
  outb(0x64, 0xaa);
  assert.is(inb(0x60), 0x55);
  assert.is(inb(0x64) & STAT_OBF, 0);
  assert.is(inb(0x60), 0x55);
});

test('i8042: the output buffer raises IRQ 1 only when the command byte enables it', () => {
  const { kbd, aux, outb, inb } = machine();
  outb(0x64, 0x60);
  outb(0x60, 0x00); // keyboard interrupt off
  outb(0x64, 0xaa);
  assert.ok(inb(0x64) & STAT_OBF);
  assert.not.ok(kbd.level);
  outb(0x64, 0x60); // a command-byte write does not disturb the buffered byte
  outb(0x60, MODE_KBD_INT);
  assert.ok(kbd.level, 'enabling the interrupt asserts IRQ 1 for the waiting byte');
  assert.is(inb(0x60), 0x55);
  assert.not.ok(kbd.level, 'reading the byte drops IRQ 1');
  assert.is(aux.raises, 0);
  assert.is(kbd.raises, 1);
});

test('i8042: keyboard bytes wait while the keyboard port is disabled', () => {
  const { kbd, dev, outb, inb, drain } = machine();
  outb(0x64, 0xad);
  assert.is(dev.pushScancodes([0x1e, 0x9e]), 2);
  assert.is(inb(0x64) & STAT_OBF, 0);
  assert.not.ok(kbd.level);
  outb(0x64, 0xae);
  assert.ok(kbd.level);
  assert.equal(drain(), [0x1e, 0x9e]);
});

test('i8042: host scan codes are bounded to the 16-byte PS/2 buffer and dropped while scanning is off', () => {
  const { dev, outb, drain } = machine();
  assert.is(dev.pushScancodes(new Uint8Array(40).fill(0x1e)), 16);
  assert.equal(drain(), new Array(16).fill(0x1e));
  outb(0x60, 0xf5);
  assert.equal(drain(), [0xfa]);
  assert.is(dev.pushScancodes([0x1e]), 0);
});

test('i8042: 0xD2 and 0xD3 echo a byte as keyboard (IRQ 1) or mouse (IRQ 12) data', () => {
  const { kbd, aux, outb, inb } = machine();
  outb(0x64, 0xd2);
  outb(0x60, 0x5a);
  assert.ok(kbd.level);
  assert.is(inb(0x64) & STAT_AUX_OBF, 0);
  assert.is(inb(0x60), 0x5a);
  outb(0x64, 0xd3);
  outb(0x60, 0xa5);
  assert.ok(aux.level);
  assert.not.ok(kbd.level);
  assert.is(inb(0x64) & (STAT_OBF | STAT_AUX_OBF), STAT_OBF | STAT_AUX_OBF);
  assert.is(inb(0x60), 0xa5);
  assert.not.ok(aux.level);
});

test('i8042: 0xD4 reaches the PS/2 mouse QEMU always attaches, which answers on IRQ 12', () => {
  const { aux, kbd, outb, drain } = machine();
  /** One byte to the mouse through 0xD4, then everything it answered. */
  const mouse = (b: number) => {
    outb(0x64, 0xd4);
    outb(0x60, b);
    return drain();
  };
  outb(0x64, 0xd4);
  outb(0x60, 0xff);
  assert.ok(aux.level);
  assert.not.ok(kbd.level);
  assert.equal(drain(), [0xfa, 0xaa, 0x00], 'reset: ACK, self-test passed, ID 0');
  assert.equal(mouse(0xf2), [0xfa, 0x00]);
  for (const rate of [200, 100, 80]) {
    assert.equal(mouse(0xf3), [0xfa]);
    assert.equal(mouse(rate), [0xfa]);
  }
  assert.equal(mouse(0xf2), [0xfa, 0x03], 'IntelliMouse after the 200/100/80 knock');
  assert.equal(mouse(0xe9), [0xfa, 0x00, 0x02, 80], 'status, resolution, sample rate');
  assert.equal(mouse(0xf4), [0xfa]);
  assert.equal(mouse(0xeb), [0xfa, 0x08, 0x00, 0x00, 0x00], 'a still mouse: an empty 4-byte packet');
  assert.equal(mouse(0xee), [0xfa], 'wrap mode');
  assert.equal(mouse(0x42), [0x42], 'echoes');
  assert.equal(mouse(0xec), [0xfa], 'wrap off');
  assert.equal(mouse(0x42), [], 'unknown commands get no answer');
});

test('i8042: the output port reads back with A20 and the reset line high; 0xDD/0xDF move A20', () => {
  const { dev, outb, drain } = machine();
  outb(0x64, 0xd0);
  assert.equal(drain(), [0xcf]);
  outb(0x64, 0xdd);
  assert.not.ok(dev.a20Enabled);
  outb(0x64, 0xdf);
  assert.ok(dev.a20Enabled);
  outb(0x64, 0xd1);
  outb(0x60, OUT_RESET);
  assert.not.ok(dev.a20Enabled);
  outb(0x64, 0xd0);
  assert.equal(drain(), [OUT_RESET]);
  outb(0x64, 0xd1);
  outb(0x60, OUT_RESET | OUT_A20);
  assert.ok(dev.a20Enabled);
});

test('i8042: 0xFE pulses the reset line and resets the machine', () => {
  const { control, outb } = machine();
  outb(0x64, 0xfe);
  assert.equal(control.resets, ['i8042 reset']);
  outb(0x64, 0xff); // pulse no bits
  outb(0x64, 0xf1); // bit 0 not pulsed
  assert.is(control.resets.length, 1);
  outb(0x64, 0xf0); // bit 0 pulsed among others
  assert.is(control.resets.length, 2);
});

test('i8042: clearing output-port bit 0 through 0xD1 resets the machine', () => {
  const { control, outb } = machine();
  outb(0x64, 0xd1);
  outb(0x60, 0xcf);
  assert.is(control.resets.length, 0);
  outb(0x64, 0xd1);
  outb(0x60, 0xce);
  assert.equal(control.resets, ['i8042 reset']);
});

test('i8042: a restored copy of the record re-asserts IRQ 1 and continues the queue', () => {
  const a = machine();
  a.outb(0x60, 0xf2);
  assert.is(a.inb(0x60), 0xfa);
  const copy = new SharedArrayBuffer(a.state.$buffer.byteLength);
  new Uint8Array(copy).set(recordBytes(a.state));
  const kbd = new RecordingIrq();
  const aux = new RecordingIrq();
  const dev = new I8042(makeRecord(i8042State, copy), { kbdIrq: kbd, auxIrq: aux, machine: new RecordingMachine() });
  dev.restored();
  assert.ok(kbd.level);
  assert.not.ok(aux.level);
  assert.is(dev.read(0, 1), 0xab);
  assert.is(dev.read(0, 1), 0x83);
  assert.is(dev.read(4, 1) & STAT_OBF, 0);
  assert.not.ok(kbd.level);
});

test.run();
