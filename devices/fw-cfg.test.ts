import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Worker } from 'node:worker_threads';
import { makeRecord, newRecord, recordBytes } from '../cpr/vmstate/vmstate.js';
import { GuestMemoryError, type GuestMemory } from '../src/memory/guest-memory.js';
import {
  FwCfg,
  FwCfgContent,
  FwCfgItems,
  fwCfgState,
  type FwCfgBlob,
  FW_CFG,
  FW_CFG_X86,
  FW_CFG_DMA_CTL_ERROR,
  FW_CFG_DMA_CTL_READ,
  FW_CFG_DMA_CTL_SELECT,
  FW_CFG_DMA_CTL_SKIP,
  FW_CFG_DMA_CTL_WRITE,
  FW_CFG_IO_BASE,
  FW_CFG_IO_LENGTH,
} from './fw-cfg.js';

/** Guest RAM for tests: one region [0, size) over an ArrayBuffer; anything else throws GuestMemoryError. */
class TestMemory implements GuestMemory {
  readonly bytes: Uint8Array;
  constructor(readonly totalSize: number) {
    this.bytes = new Uint8Array(totalSize);
  }
  contains(gpa: number, length: number): boolean {
    return (
      Number.isSafeInteger(gpa) &&
      Number.isSafeInteger(length) &&
      gpa >= 0 &&
      length >= 0 &&
      gpa + length <= this.totalSize
    );
  }
  private check(gpa: number, length: number): void {
    if (!this.contains(gpa, length)) throw new GuestMemoryError(gpa, length);
  }
  private view(gpa: number, n: number): DataView {
    this.check(gpa, n);
    return new DataView(this.bytes.buffer, gpa, n);
  }
  readU8(gpa: number) {
    return this.view(gpa, 1).getUint8(0);
  }
  readU16(gpa: number) {
    return this.view(gpa, 2).getUint16(0, true);
  }
  readU32(gpa: number) {
    return this.view(gpa, 4).getUint32(0, true);
  }
  readU64(gpa: number) {
    return this.view(gpa, 8).getBigUint64(0, true);
  }
  writeU8(gpa: number, v: number) {
    this.view(gpa, 1).setUint8(0, v);
  }
  writeU16(gpa: number, v: number) {
    this.view(gpa, 2).setUint16(0, v, true);
  }
  writeU32(gpa: number, v: number) {
    this.view(gpa, 4).setUint32(0, v, true);
  }
  writeU64(gpa: number, v: bigint) {
    this.view(gpa, 8).setBigUint64(0, v, true);
  }
  read(gpa: number, length: number) {
    this.check(gpa, length);
    return this.bytes.slice(gpa, gpa + length);
  }
  write(gpa: number, data: Uint8Array) {
    this.check(gpa, data.length);
    this.bytes.set(data, gpa);
  }
  fill(gpa: number, length: number, value: number) {
    this.check(gpa, length);
    this.bytes.fill(value, gpa, gpa + length);
  }
  slice(gpa: number, length: number) {
    this.check(gpa, length);
    return this.bytes.subarray(gpa, gpa + length);
  }
}

const RAM = 64 * 1024;
const ascii = (s: string) => new TextEncoder().encode(s);

function content() {
  return new FwCfgContent()
    .addU64(FW_CFG.RAM_SIZE, 128 * 1024 * 1024)
    .addU16(FW_CFG.NB_CPUS, 2)
    .addString(FW_CFG.CMDLINE_DATA, 'console=ttyS0')
    .add(FW_CFG_X86.E820_TABLE, Uint8Array.of(1, 2, 3, 4))
    .addFile('etc/b', ascii('bee'))
    .addFile('etc/a', ascii('apple'))
    .addFile('bootorder', new Uint8Array(0));
}

function machine(blob: FwCfgBlob = content().build()) {
  const state = newRecord(fwCfgState);
  const memory = new TestMemory(RAM);
  const dev = new FwCfg(state, blob, memory);
  dev.reset();
  const select = (key: number) => dev.write(0, 2, key);
  const readBytes = (n: number) => Array.from({ length: n }, () => dev.read(1, 1));
  const swap = (v: number) => (((v & 0xff) << 24) | ((v & 0xff00) << 8) | ((v >>> 8) & 0xff00) | (v >>> 24)) >>> 0;
  /** What a guest does: put an FWCfgDmaAccess at `at`, write its address (big-endian halves) to 0x514/0x518. */
  const dma = (at: number, control: number, length: number, address: bigint) => {
    const d = new DataView(memory.bytes.buffer, at, 16);
    d.setUint32(0, control, false);
    d.setUint32(4, length, false);
    d.setBigUint64(8, address, false);
    dev.write(4, 4, swap(Math.floor(at / 0x1_0000_0000)));
    dev.write(8, 4, swap(at >>> 0));
    return new DataView(memory.bytes.buffer, at, 4).getUint32(0, false);
  };
  return { state, memory, dev, select, readBytes, dma, blob };
}

test('fw_cfg: the window is 0x510-0x51B', () => {
  const { dev } = machine();
  assert.equal(
    dev.regions().map((r) => [r.space, r.base, r.length]),
    [['pio', FW_CFG_IO_BASE, FW_CFG_IO_LENGTH]],
  );
  assert.is(FW_CFG_IO_BASE, 0x510);
});

test('fw_cfg: the signature reads "QEMU" through selector and data port, then zeros past its end', () => {
  const { select, readBytes } = machine();
  select(FW_CFG.SIGNATURE);
  assert.equal(readBytes(6), [0x51, 0x45, 0x4d, 0x55, 0, 0]);
});

test('fw_cfg: power-on selects the signature', () => {
  const { readBytes } = machine();
  assert.equal(readBytes(4), Array.from(ascii('QEMU')));
});

test('fw_cfg: ID says traditional + DMA interface (or traditional only without DMA)', () => {
  const a = machine();
  a.select(FW_CFG.ID);
  assert.equal(a.readBytes(4), [0x03, 0, 0, 0]);
  const b = machine(new FwCfgContent({ dma: false }).build());
  b.select(FW_CFG.ID);
  assert.equal(b.readBytes(4), [0x01, 0, 0, 0]);
  assert.is(b.dev.read(4, 4), 0xffffffff, 'no DMA register without DMA');
});

test('fw_cfg: numbers are little-endian, strings carry their NUL, UUID defaults to zeros', () => {
  const { select, readBytes } = machine();
  select(FW_CFG.RAM_SIZE);
  assert.equal(readBytes(8), [0, 0, 0, 0x08, 0, 0, 0, 0]);
  select(FW_CFG.NB_CPUS);
  assert.equal(readBytes(2), [2, 0]);
  select(FW_CFG.CMDLINE_DATA);
  assert.equal(readBytes(14), [...ascii('console=ttyS0'), 0]);
  select(FW_CFG.UUID);
  assert.equal(readBytes(17), new Array(17).fill(0));
});

test('fw_cfg: FILE_DIR is a big-endian count and 64-byte entries in name order, byte for byte', () => {
  const { select, readBytes } = machine();
  select(FW_CFG.FILE_DIR);
  const entry = (size: number, key: number, name: string) => {
    const e = new Array(64).fill(0);
    e[0] = size >>> 24;
    e[1] = (size >>> 16) & 0xff;
    e[2] = (size >>> 8) & 0xff;
    e[3] = size & 0xff;
    e[4] = key >> 8;
    e[5] = key & 0xff; // be16 select, be16 reserved = 0
    for (let i = 0; i < name.length; i++) e[8 + i] = name.charCodeAt(i);
    return e;
  };
  const expected = [0, 0, 0, 3, ...entry(0, 0x20, 'bootorder'), ...entry(5, 0x21, 'etc/a'), ...entry(3, 0x22, 'etc/b')];
  assert.equal(readBytes(4 + 3 * 64 + 1), [...expected, 0]);
});

test('fw_cfg: a named file is readable at the key its directory entry gives', () => {
  const { select, readBytes } = machine();
  select(0x21);
  assert.equal(readBytes(6), [...ascii('apple'), 0]);
  select(0x22);
  assert.equal(readBytes(3), Array.from(ascii('bee')));
});

test('fw_cfg: the write-channel bit selects the same item; arch-local items are separate; unknown keys read 0', () => {
  const { select, readBytes } = machine();
  select(0x4000 | FW_CFG.SIGNATURE);
  assert.equal(readBytes(1), [0x51]);
  select(FW_CFG_X86.E820_TABLE);
  assert.equal(readBytes(5), [1, 2, 3, 4, 0]);
  select(0x0003 | 0x1000); // no generic item 0x1003 (0x8003 is arch-local)
  assert.equal(readBytes(2), [0, 0]);
  select(0x7fff);
  assert.equal(readBytes(1), [0]);
});

test('fw_cfg: writes to the data port are ignored; selecting rewinds', () => {
  const { dev, select, readBytes } = machine();
  select(FW_CFG.SIGNATURE);
  assert.equal(readBytes(2), [0x51, 0x45]);
  dev.write(1, 1, 0x00);
  dev.write(0, 1, 0x00);
  assert.equal(readBytes(2), [0x4d, 0x55]);
  select(FW_CFG.SIGNATURE);
  assert.equal(readBytes(1), [0x51]);
});

test('fw_cfg: reading the DMA register returns the "QEMU CFG" signature', () => {
  const { dev } = machine();
  const bytes = (v: number, n: number) => Array.from({ length: n }, (_, i) => (v >>> (8 * i)) & 0xff);
  assert.equal([...bytes(dev.read(4, 4), 4), ...bytes(dev.read(8, 4), 4)], Array.from(ascii('QEMU CFG')));
});

test('fw_cfg: DMA select+read copies an item into guest memory and reports success', () => {
  const { memory, dma } = machine();
  const control = dma(0x1000, (0x21 << 16) | FW_CFG_DMA_CTL_SELECT | FW_CFG_DMA_CTL_READ, 5, 0x2000n);
  assert.is(control, 0);
  assert.equal(Array.from(memory.bytes.subarray(0x2000, 0x2006)), [...ascii('apple'), 0]);
});

test('fw_cfg: a DMA read past the end of the item fills zeros', () => {
  const { memory, dma } = machine();
  memory.bytes.fill(0xee, 0x3000, 0x3010);
  assert.is(dma(0x1000, (0x22 << 16) | FW_CFG_DMA_CTL_SELECT | FW_CFG_DMA_CTL_READ, 8, 0x3000n), 0);
  assert.equal(Array.from(memory.bytes.subarray(0x3000, 0x3009)), [...ascii('bee'), 0, 0, 0, 0, 0, 0xee]);
});

test('fw_cfg: DMA skip advances the offset shared with the data port; a later DMA read continues there', () => {
  const { memory, dma, readBytes } = machine();
  assert.is(dma(0x1000, (FW_CFG.SIGNATURE << 16) | FW_CFG_DMA_CTL_SELECT | FW_CFG_DMA_CTL_SKIP, 1, 0n), 0);
  assert.equal(readBytes(1), [0x45], 'the data port continues after the skipped byte');
  assert.is(dma(0x1000, FW_CFG_DMA_CTL_READ, 2, 0x4000n), 0);
  assert.equal(Array.from(memory.bytes.subarray(0x4000, 0x4002)), [0x4d, 0x55]);
});

test('fw_cfg: a DMA access with no operation bit only selects', () => {
  const { memory, dma, readBytes } = machine();
  assert.is(dma(0x1000, (0x21 << 16) | FW_CFG_DMA_CTL_SELECT, 100, 0x5000n), 0);
  assert.is(memory.bytes[0x5000], 0);
  assert.equal(readBytes(2), [0x61, 0x70]);
});

test('fw_cfg: a DMA read to an address outside RAM sets ERROR and does not throw', () => {
  const { memory, dma } = machine();
  const sel = (0x21 << 16) | FW_CFG_DMA_CTL_SELECT | FW_CFG_DMA_CTL_READ;
  assert.is(dma(0x1000, sel, 5, BigInt(RAM - 2)), FW_CFG_DMA_CTL_ERROR, 'straddles the end of RAM');
  assert.is(memory.bytes[RAM - 2], 0, 'nothing written');
  assert.is(dma(0x1000, sel, 5, 0xffff_ffff_ffff_fff0n), FW_CFG_DMA_CTL_ERROR, 'far beyond 2^53');
  assert.is(dma(0x1000, sel, 0xffff_ffff, 0x2000n), FW_CFG_DMA_CTL_ERROR, 'zero fill past the item runs out of RAM');
});

test('fw_cfg: an FWCfgDmaAccess that is not wholly in RAM fails without throwing', () => {
  const { dev, state, memory } = machine();
  memory.bytes.fill(0x11, RAM - 8);
  dev.write(4, 4, 0);
  assert.not.throws(() => dev.write(8, 4, 0xf8ff0000)); // big-endian 0x0000FFF8: 16 bytes would cross RAM's end
  assert.equal(
    Array.from(memory.bytes.subarray(RAM - 8)),
    [0, 0, 0, FW_CFG_DMA_CTL_ERROR, 0x11, 0x11, 0x11, 0x11],
    'ERROR lands in the control word, which is in RAM; nothing else is touched',
  );
  dev.write(4, 4, 0x01000000); // high half 1: 4 GiB + ...
  assert.not.throws(() => dev.write(8, 4, 0));
  assert.is(state.dmaAddrHigh, 0);
  assert.is(state.dmaAddrLow, 0);
});

test('fw_cfg: DMA writes fail: no item is writable', () => {
  const { memory, dma, readBytes, select } = machine();
  memory.bytes.set(ascii('XYZ'), 0x6000);
  assert.is(dma(0x1000, (0x22 << 16) | FW_CFG_DMA_CTL_SELECT | FW_CFG_DMA_CTL_WRITE, 3, 0x6000n), FW_CFG_DMA_CTL_ERROR);
  select(0x22);
  assert.equal(readBytes(3), Array.from(ascii('bee')));
});

test('fw_cfg: only 32-bit writes move the DMA address; the high half alone starts nothing', () => {
  const { dev, state, memory } = machine();
  dev.write(4, 4, 0x00000000);
  dev.write(8, 2, 0x0010);
  dev.write(8, 1, 0x10);
  assert.is(state.dmaAddrLow, 0);
  assert.equal(Array.from(memory.bytes.subarray(0, 16)), new Array(16).fill(0));
});

test('fw_cfg: a restored copy of the record continues a half-read item at the same offset', () => {
  const a = machine();
  a.select(0x21);
  assert.equal(a.readBytes(2), [0x61, 0x70]);
  const copy = new SharedArrayBuffer(a.state.$buffer.byteLength);
  new Uint8Array(copy).set(recordBytes(a.state));
  const dev = new FwCfg(makeRecord(fwCfgState, copy), a.blob, new TestMemory(RAM));
  assert.equal([dev.read(1, 1), dev.read(1, 1), dev.read(1, 1), dev.read(1, 1)], [0x70, 0x6c, 0x65, 0]);
});

test('fw_cfg: the content builder refuses keys it owns, the file range, duplicates and bad names', () => {
  const c = new FwCfgContent();
  assert.throws(() => c.add(FW_CFG.SIGNATURE, new Uint8Array(4)), /build\(\)/);
  assert.throws(() => c.add(FW_CFG.FILE_DIR, new Uint8Array(4)), /build\(\)/);
  assert.throws(() => c.add(0x25, new Uint8Array(1)), /file range/);
  assert.throws(() => c.add(0x4005, new Uint8Array(1)), /write-channel/);
  assert.throws(() => c.add(0x10000, new Uint8Array(1)), /16-bit/);
  c.addU16(FW_CFG.NB_CPUS, 1);
  assert.throws(() => c.addU16(FW_CFG.NB_CPUS, 2), /twice/);
  assert.throws(() => c.addU16(FW_CFG.MAX_CPUS, 0x10000), /16 bits/);
  assert.throws(() => c.addFile('x'.repeat(56), new Uint8Array(0)), /printable ASCII/);
  assert.throws(() => c.addFile('', new Uint8Array(0)), /printable ASCII/);
  c.addFile('x'.repeat(55), new Uint8Array(0));
  assert.throws(() => c.addFile('x'.repeat(55), new Uint8Array(0)), /twice/);
});

test('fw_cfg: the content keeps a copy of what was added', () => {
  const data = ascii('abc');
  const c = new FwCfgContent().add(FW_CFG.KERNEL_DATA, data);
  data[0] = 0x7a;
  assert.equal(Array.from(new FwCfgItems(c.build()).get(FW_CFG.KERNEL_DATA)!), Array.from(ascii('abc')));
});

test('fw_cfg: a corrupt content blob is refused', () => {
  const { buffer } = content().build();
  const bad = new SharedArrayBuffer(buffer.byteLength);
  new Uint8Array(bad).set(new Uint8Array(buffer));
  new DataView(bad).setUint32(16 + 12, 0x7fffffff, true); // first item's length beyond the blob
  assert.throws(() => new FwCfgItems({ buffer: bad }), /outside the blob/);
  assert.throws(() => new FwCfgItems({ buffer: new SharedArrayBuffer(16) }), /magic/);
});

test('fw_cfg: a worker thread shares the same content buffer and reads the same items', async () => {
  const blob = content().build();
  const url = new URL('./fw-cfg.js', import.meta.url).href;
  const worker = new Worker(
    `
    const { parentPort, workerData } = require('node:worker_threads');
    import(workerData.url).then(({ FwCfgItems }) => {
      const items = new FwCfgItems(workerData.blob);
      parentPort.postMessage({ file: Array.from(items.get(0x21)), shared: workerData.blob.buffer instanceof SharedArrayBuffer });
    });
  `,
    { eval: true, workerData: { blob, url } },
  );
  const reply = await new Promise<{ file: number[]; shared: boolean }>((resolve, reject) => {
    worker.once('message', resolve);
    worker.once('error', reject);
  });
  await worker.terminate();
  assert.equal(reply.file, Array.from(ascii('apple')));
  assert.ok(reply.shared);
});

test.run();
