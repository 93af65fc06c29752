// fw_cfg (devices/fw-cfg.ts) as a guest drives it: its first 2 KiB of input become guest RAM from address 0 (where
// the guest puts FWCfgDmaAccess structures, and where DMA reads land), the rest is a script of selector, data and
// DMA-address register accesses (0x510-0x51B). No access throws, and DMA never reaches outside RAM.
import { newRecord } from '../../cpr/vmstate/vmstate.js';
import { FW_CFG, FW_CFG_X86, FwCfg, FwCfgContent, fwCfgState } from '../../devices/fw-cfg.js';
import { CheckedMemory } from '../../devices/virtio/testing/checked-memory.js';
import { ByteScript } from '../support/bytes.js';
import { invariant } from '../support/contract.js';
import { playRegisters } from '../support/register-script.js';

export const instrumented = ['devices/fw-cfg'];

const RAM_IMAGE = 2048;
const ascii = (s: string) => new TextEncoder().encode(s);
const blob = new FwCfgContent()
  .addU64(FW_CFG.RAM_SIZE, 128 * 1024 * 1024)
  .addU16(FW_CFG.NB_CPUS, 2)
  .addString(FW_CFG.CMDLINE_DATA, 'console=ttyS0')
  .add(FW_CFG_X86.E820_TABLE, Uint8Array.of(1, 2, 3, 4))
  .addFile('etc/a', ascii('apple'))
  .addFile('bootorder', new Uint8Array(0))
  .build();

export function fuzz(data: Uint8Array): void {
  const memory = new CheckedMemory(64 << 10);
  memory.write(0, data.subarray(0, RAM_IMAGE));
  const dev = new FwCfg(newRecord(fwCfgState), blob, memory);
  dev.reset();
  playRegisters(new ByteScript(data.subarray(RAM_IMAGE)), dev, { span: 12, sizes: [1, 2, 4] });
  invariant(memory.violations.length === 0, `DMA outside RAM: ${JSON.stringify(memory.violations[0])}`);
}

/** A guest's DMA: an FWCfgDmaAccess (big-endian) at 0x100, its address written to 0x514/0x518 (big-endian). */
function dmaSeed(control: number, length: number, address: number, select?: number): Uint8Array {
  const ram = new Uint8Array(RAM_IMAGE);
  const v = new DataView(ram.buffer);
  v.setUint32(0x100, control, false);
  v.setUint32(0x104, length, false);
  v.setBigUint64(0x108, BigInt(address), false);
  const ops = [
    ...(select === undefined ? [] : [1 | (1 << 2), 0, select & 0xff, select >> 8]), // 2-byte write of the selector
    1 | (2 << 2),
    4,
    0,
    0,
    0,
    0, // 4-byte write, high half: 0
    1 | (2 << 2),
    8,
    0,
    0,
    1,
    0, // 4-byte write, low half: 0x100 byte-swapped
  ];
  return Uint8Array.from([...ram, ...ops]);
}

export const seeds = (): Uint8Array[] => [
  dmaSeed((FW_CFG.SIGNATURE << 16) | 0x08 | 0x02, 4, 0x400), // select + read 4 bytes
  dmaSeed(0x02, 64, 0x400, FW_CFG.FILE_DIR), // read the file directory
  dmaSeed(0x04, 8, 0x400, FW_CFG.CMDLINE_DATA), // skip
  dmaSeed(0x10, 8, 0x400, FW_CFG.ID), // write (refused)
  // plain port I/O: select the ID, read four bytes of data
  Uint8Array.from([...new Uint8Array(RAM_IMAGE), 1 | (1 << 2), 0, FW_CFG.ID, 0, 0, 1, 0, 1, 0, 1, 0, 1]),
];
