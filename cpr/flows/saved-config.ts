// The configuration a checkpoint was taken with, read back from its file: what a VM needs to be built again when
// nothing else describes it (the Node library's Machine.restore(file) rebuilds the machine from the file alone).
import { readCheckpoint, findSection, CheckpointError } from '../file/checkpoint-file.js';
import { prepareDecode } from '../vmstate/stream.js';
import { newRecord } from '../vmstate/vmstate.js';
import { machineConfigDescriptor, recordToMachineConfig, type SavedMachineConfig } from '../machine-state/index.js';

/** Verifies the checkpoint at `path` and decodes its CONFIG section; CheckpointError names what is wrong. */
export function readSavedConfig(path: string): SavedMachineConfig {
  const checkpoint = readCheckpoint(path);
  const section = findSection(checkpoint, 'config', machineConfigDescriptor.name);
  if (!section) throw new CheckpointError(`checkpoint ${path} has no '${machineConfigDescriptor.name}' section`);
  const record = newRecord(machineConfigDescriptor, false);
  try {
    prepareDecode(machineConfigDescriptor, section.payload, section.version, record)();
    return recordToMachineConfig(record);
  } catch (e) {
    throw new CheckpointError(`checkpoint ${path}: section config '${section.name}': ${(e as Error).message}`);
  }
}
