import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { newRecord } from '../../cpr/vmstate/vmstate.js';
import type { CharOut } from '../../src/bus/types.js';
import {
  VirtioConsole,
  virtioConsoleState,
  CONSOLE_RECEIVEQ,
  CONSOLE_TRANSMITQ,
  CONSOLE_CFG_COLS,
  CONSOLE_CFG_ROWS,
  CONSOLE_CFG_MAX_NR_PORTS,
  CONSOLE_CFG_EMERG_WR,
  VIRTIO_CONSOLE_F_SIZE,
  VIRTIO_CONSOLE_F_MULTIPORT,
  VIRTIO_CONSOLE_F_EMERG_WRITE,
} from './console.js';
import { VIRTIO_ID_CONSOLE } from './types.js';
import { FakeTransport } from './testing/transport.js';

class Out implements CharOut {
  chunks: Uint8Array[] = [];
  write(bytes: Uint8Array): void {
    this.chunks.push(bytes.slice());
  }
  get text(): string {
    return this.chunks.map((c) => new TextDecoder().decode(c)).join('');
  }
}

const text = (s: string) => new TextEncoder().encode(s);

function setup(options: { size?: { cols: number; rows: number } } = {}) {
  const state = newRecord(virtioConsoleState);
  const out = new Out();
  let inputSpace = 0;
  const con = new VirtioConsole(state, {
    out,
    size: options.size,
    onInputSpace: () => {
      inputSpace++;
    },
  });
  con.powerOn();
  const t = new FakeTransport(con).start();
  return {
    state,
    out,
    con,
    t,
    rx: t.drivers[CONSOLE_RECEIVEQ],
    tx: t.drivers[CONSOLE_TRANSMITQ],
    inputSpace: () => inputSpace,
  };
}

test('virtio-console: one port, two queues; EMERG_WRITE always, SIZE only with a size, never MULTIPORT', () => {
  const { con } = setup();
  assert.is(con.deviceType, VIRTIO_ID_CONSOLE);
  assert.is(con.queueMaxSizes.length, 2);
  assert.ok(con.deviceFeatures & (1n << VIRTIO_CONSOLE_F_EMERG_WRITE));
  assert.not.ok(con.deviceFeatures & (1n << VIRTIO_CONSOLE_F_SIZE));
  assert.not.ok(con.deviceFeatures & (1n << VIRTIO_CONSOLE_F_MULTIPORT));
  const sized = setup({ size: { cols: 132, rows: 43 } }).con;
  assert.ok(sized.deviceFeatures & (1n << VIRTIO_CONSOLE_F_SIZE));
  assert.is(sized.readConfig(CONSOLE_CFG_COLS, 2), 132);
  assert.is(sized.readConfig(CONSOLE_CFG_ROWS, 2), 43);
  assert.is(sized.readConfig(CONSOLE_CFG_COLS, 4), 132 | (43 << 16));
  assert.is(sized.readConfig(CONSOLE_CFG_MAX_NR_PORTS, 4), 1);
});

test('virtio-console: transmitq bytes go to the CharOut in order, across buffers and chains', () => {
  const { tx, t, out } = setup();
  tx.add([{ data: text('hello, ') }, { data: text('world') }]);
  tx.add([{ data: text('\n') }], { indirect: true });
  t.kick(CONSOLE_TRANSMITQ);
  assert.is(out.text, 'hello, world\n');
  assert.equal(
    tx.takeUsed().map((e) => e.len),
    [0, 0],
  );
  assert.equal(t.takeInterrupts(), [CONSOLE_TRANSMITQ]);
});

test('virtio-console: receive fills receive buffers and returns how much it took; the rest waits', () => {
  const { rx, t, con } = setup();
  assert.is(con.receive(text('x')), 0, 'no buffers yet');
  const a = rx.add([{ length: 4, write: true }]);
  const b = rx.add([{ length: 3, write: true }]);
  assert.is(con.receive(text('abcdefghij')), 7);
  assert.equal(rx.takeUsed(), [
    { id: a.head, len: 4 },
    { id: b.head, len: 3 },
  ]);
  assert.is(new TextDecoder().decode(t.memory.read(a.buffers[0].gpa, 4)), 'abcd');
  assert.is(new TextDecoder().decode(t.memory.read(b.buffers[0].gpa, 3)), 'efg');
  assert.equal(t.takeInterrupts(), [CONSOLE_RECEIVEQ]);
  assert.is(con.receive(text('hij')), 0);
  assert.equal(t.takeInterrupts(), [], 'nothing delivered, no interrupt');
});

test('virtio-console: new receive buffers call onInputSpace so pending input is offered again', () => {
  const s = setup();
  s.rx.add([{ length: 8, write: true }]);
  s.t.kick(CONSOLE_RECEIVEQ);
  assert.is(s.inputSpace(), 1);
});

test('virtio-console: emerg_wr outputs one byte; other config writes are ignored', () => {
  const { con, out } = setup();
  con.writeConfig(CONSOLE_CFG_EMERG_WR, 4, 0x141);
  con.writeConfig(CONSOLE_CFG_COLS, 2, 99);
  assert.is(out.text, 'A');
  assert.is(con.readConfig(CONSOLE_CFG_EMERG_WR, 4), 0);
  assert.is(con.readConfig(CONSOLE_CFG_COLS, 2), 0);
});

test('virtio-console: resize updates the recorded size and signals a config change', () => {
  const { con, t, state } = setup({ size: { cols: 80, rows: 25 } });
  con.resize(100, 30);
  assert.is(state.cols, 100);
  assert.is(con.readConfig(CONSOLE_CFG_ROWS, 2), 30);
  assert.is(t.configChanges, 1);
  const plain = setup();
  plain.con.resize(1, 2);
  assert.is(plain.t.configChanges, 0, 'no SIZE feature: nothing changes');
});

test('virtio-console: a malformed chain on either queue fails the device; nothing is thrown', () => {
  const s = setup();
  s.rx.pushHead(4096);
  assert.is(s.con.receive(text('abc')), 0);
  s.tx.writeDesc(s.tx.desc, 0, 0x7fff_0000, 16, 0, 0);
  s.tx.pushHead(0);
  s.t.kick(CONSOLE_TRANSMITQ);
  assert.is(s.t.failures.length, 2);
  assert.match(s.t.failures[0], /virtqueue 0: .*beyond the queue size/);
  assert.match(s.t.failures[1], /virtqueue 1: descriptor 0: buffer 0x7fff0000\+0x10 is not in guest RAM/);
  assert.equal(s.t.memory.violations, []);
});

test('virtio-console: before activation and after reset nothing is transmitted or received', () => {
  const state = newRecord(virtioConsoleState);
  const out = new Out();
  const con = new VirtioConsole(state, { out });
  const t = new FakeTransport(con);
  t.drivers[CONSOLE_TRANSMITQ].add([{ data: text('early') }]);
  t.kick(CONSOLE_TRANSMITQ);
  assert.is(out.text, '');
  t.start();
  t.kick(CONSOLE_TRANSMITQ);
  assert.is(out.text, 'early');
  con.reset();
  t.drivers[CONSOLE_RECEIVEQ].add([{ length: 4, write: true }]);
  assert.is(con.receive(text('zz')), 0);
});

test.run();
