// What the machine's fw_cfg serves, from its configuration: the items QEMU's pc machine provides (RAM size, CPU
// counts, the kernel command line, the e820 map as "etc/e820"), so guests written against QEMU read the same.
import { FwCfgContent, type FwCfgBlob } from '../../devices/fw-cfg/content.js';
import { FW_CFG } from '../../devices/fw-cfg/keys.js';
import { x86RamLayout } from '../memory/x86-layout.js';
import { e820FromRam } from '../boot/e820.js';
import { qemuKernelCmdline } from '../boot/multiboot.js';
import type { MachineConfig } from './config.js';

/** QEMU's "etc/e820": packed {le64 address, le64 length, le32 type} entries. */
function e820File(ramSize: number): Uint8Array {
  const map = e820FromRam(x86RamLayout(ramSize).map((r) => ({ start: r.gpa, size: r.size })));
  const out = new Uint8Array(map.length * 20);
  const d = new DataView(out.buffer);
  map.forEach((e, i) => {
    d.setBigUint64(i * 20, BigInt(e.addr), true);
    d.setBigUint64(i * 20 + 8, BigInt(e.size), true);
    d.setUint32(i * 20 + 16, e.type, true);
  });
  return out;
}

export function buildFwCfg(config: MachineConfig): FwCfgBlob {
  const content = new FwCfgContent();
  content.add(FW_CFG.UUID, new Uint8Array(16));
  content.addU64(FW_CFG.RAM_SIZE, config.memory.size);
  content.addU16(FW_CFG.NOGRAPHIC, 1);
  content.addU16(FW_CFG.NB_CPUS, config.cpus);
  content.addU16(FW_CFG.MAX_CPUS, config.cpus);
  content.addU32(FW_CFG.MACHINE_ID, 0);
  content.addU16(FW_CFG.BOOT_MENU, 0);
  if (config.boot?.kind === 'kernel') {
    const cmdline = qemuKernelCmdline(config.boot.path, config.boot.append);
    content.addString(FW_CFG.KERNEL_CMDLINE, cmdline);
    content.addU32(FW_CFG.CMDLINE_SIZE, Buffer.byteLength(cmdline) + 1);
    content.addString(FW_CFG.CMDLINE_DATA, cmdline);
  }
  content.addFile('etc/e820', e820File(config.memory.size));
  return content.build();
}
