// tsvmm's library entry: `import { Machine } from 'tsvmm'` (package.json "exports"). The published package runs
// the bundle of this module (bundle-entry.ts); its types are this file's declarations, which name nothing outside
// src/api and Node's own modules.
export { Machine } from './machine.js';
export type {
  CheckpointOptions,
  DiskOptions,
  ExitReason,
  HostOptions,
  MachineEvents,
  MachineExit,
  MachineOptions,
  MemoryOptions,
  NicOptions,
  PanicAction,
  RestoreOptions,
  RunStatus,
  SerialOption,
} from './options.js';
