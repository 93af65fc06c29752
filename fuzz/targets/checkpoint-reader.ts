// The checkpoint reader (cpr/file/read.ts) on any file, through `tsvmm vmstate dump` (which decodes every section
// whose descriptor the machine's registry knows): it verifies and decodes, or refuses the file with a one-line
// CheckpointError or VmstateError. The trailer's CRC is fixed up first so the fuzzer explores the structure behind
// the checksum instead of stopping at it (a wrong checksum is one comparison, covered by cpr/file's tests).
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CheckpointError, SECTION_KINDS, readCheckpoint, readRam } from '../../cpr/file/checkpoint-file.js';
import { descriptorFor } from '../../cpr/flows/registry.js';
import { machineConfigDescriptor, pitStateDescriptor, vcpuStateDescriptor } from '../../cpr/machine-state/index.js';
import { encodeRecord } from '../../cpr/vmstate/stream.js';
import { type Descriptor, newRecord, type StateOf, VmstateError } from '../../cpr/vmstate/vmstate.js';
import { i8042State } from '../../devices/i8042.js';
import { rtcState } from '../../devices/rtc.js';
import { serialState } from '../../devices/serial.js';
import { vmstateDump } from '../../src/cli/vmstate-dump.js';
import { type RawSection, rawCheckpoint, withFixedChecksum } from '../../cpr/testing/checkpoint-bytes.js';
import { refusedOnlyWith } from '../support/contract.js';

/** What the fuzzer instruments for coverage (under dist/). */
export const instrumented = ['cpr/file/', 'cpr/vmstate/', 'src/cli/vmstate-dump'];

let path = '';

export function fuzz(data: Uint8Array): void {
  if (!path) {
    // tmpfs where there is one: a file per input on a disk costs more than the reader itself
    const dir = mkdtempSync(join(existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), 'tsvmm-fuzz-checkpoint-'));
    process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
    path = join(dir, 'input.cpr');
  }
  writeFileSync(path, withFixedChecksum(data), { mode: 0o600 });
  refusedOnlyWith([CheckpointError, VmstateError], () => {
    vmstateDump(path, descriptorFor);
    const checkpoint = readCheckpoint(path);
    if (checkpoint.ram) {
      const length = Math.min(checkpoint.ram.length, 4096);
      readRam(checkpoint, checkpoint.ram.length - length, length, new Uint8Array(length));
    }
  });
}

/** A section of `descriptor`'s power-on record, named after it as the machine names its sections. */
function section(code: number, descriptor: Descriptor, instance = 0): RawSection {
  const payload = encodeRecord(descriptor, newRecord(descriptor) as StateOf<typeof descriptor>);
  return { code, name: descriptor.name, instance, version: descriptor.version, payload };
}

export const seeds = (): Uint8Array[] => {
  const config = section(SECTION_KINDS.config, machineConfigDescriptor);
  const devices = [serialState, rtcState, i8042State].map((d) => section(SECTION_KINDS.device, d));
  const ram: RawSection = { code: SECTION_KINDS.ram, name: 'ram', payload: new Uint8Array(4096).fill(0xf4) };
  return [
    rawCheckpoint([config]),
    rawCheckpoint([config, ...devices, section(SECTION_KINDS.kvm, pitStateDescriptor)]),
    rawCheckpoint([config, section(SECTION_KINDS.device, serialState), ram]),
    // What the writer makes since format 2: a padding section aligning the RAM payload (here to 512 bytes).
    rawCheckpoint([config, { code: SECTION_KINDS.padding, name: '', version: 0, payload: new Uint8Array(300) }, ram]),
    rawCheckpoint([
      config,
      section(SECTION_KINDS.vcpu, vcpuStateDescriptor),
      section(SECTION_KINDS.vcpu, vcpuStateDescriptor, 1),
    ]),
  ];
};
