// The checkpoint file (format in cpr/file/format.ts): atomic writing, verified reading, streamed RAM.
export {
  CheckpointError,
  FORMAT_VERSION,
  MAGIC,
  SECTION_KINDS,
  MAX_SECTION_BYTES,
  MAX_SECTIONS,
  MAX_RETAINED_BYTES,
  jsonSection,
  parseJsonSection,
  printable,
  crc32,
  type Section,
  type SectionKind,
} from './format.js';
export {
  writeCheckpoint,
  type CheckpointContents,
  type RamSource,
  type WriteOptions,
  type WriteResult,
  type WriteTimings,
} from './write.js';
export type { RamIo } from './ram-writer.js';
export {
  readCheckpoint,
  readRam,
  openRam,
  findSection,
  type Checkpoint,
  type RamLocation,
  type RamReader,
  type FileIdentity,
} from './read.js';
