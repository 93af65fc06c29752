// `tsvmm vmstate dump FILE`: any checkpoint as JSON. The file is verified first (a refused file is a
// CheckpointError for the caller to print); sections whose descriptor the registry knows are decoded field by field,
// JSON sections (config, timings, description) are shown as their value, anything else as its size and first bytes.
import { readCheckpoint, parseJsonSection, type Section, type SectionKind } from '../../cpr/file/checkpoint-file.js';
import { decodeToJson } from '../../cpr/vmstate/stream.js';
import type { Descriptor } from '../../cpr/vmstate/vmstate.js';

/** Which descriptor decodes a section: a map keyed by `sectionKey(kind, name)`, or a function. */
export type DescriptorRegistry =
  | ReadonlyMap<string, Descriptor>
  | ((kind: SectionKind, name: string) => Descriptor | undefined);

export const sectionKey = (kind: SectionKind, name: string): string => `${kind}:${name}`;

/** Bytes of an undecodable payload shown in hex. */
const HEX_PREFIX_BYTES = 64;
const JSON_KINDS: ReadonlySet<SectionKind> = new Set(['config', 'timings', 'description', 'generation']);

export function vmstateDump(path: string, registry: DescriptorRegistry): string {
  const checkpoint = readCheckpoint(path);
  const lookup =
    typeof registry === 'function'
      ? registry
      : (kind: SectionKind, name: string) => registry.get(sectionKey(kind, name));
  const sections: unknown[] = checkpoint.sections.map((section) =>
    dumpSection(section, lookup(section.kind, section.name)),
  );
  if (checkpoint.ram) {
    const { name, instance, version, offset, length } = checkpoint.ram;
    sections.push({ kind: 'ram', name, instance, version, size: length, fileOffset: offset });
  }
  const dump = {
    path,
    formatVersion: checkpoint.formatVersion,
    size: checkpoint.fileBytes,
    checksum: `crc32:${checkpoint.checksum.toString(16).padStart(8, '0')}`,
    sections,
  };
  return JSON.stringify(dump, null, 2);
}

function dumpSection(section: Section, descriptor: Descriptor | undefined): unknown {
  const { kind, name, instance, version, payload } = section;
  const head = { kind, name, instance, version, size: payload.length };
  if (descriptor) {
    try {
      return { ...head, descriptor: descriptor.name, state: decodeToJson(descriptor, payload, version) };
    } catch (e) {
      return { ...head, descriptor: descriptor.name, error: (e as Error).message, hexPrefix: hexPrefix(payload) };
    }
  }
  if (JSON_KINDS.has(kind)) {
    try {
      return { ...head, json: parseJsonSection(section) };
    } catch {
      // not JSON (a config written as a vmstate stream without a descriptor here): fall through to hex
    }
  }
  return { ...head, hexPrefix: hexPrefix(payload) };
}

function hexPrefix(payload: Uint8Array): string {
  return Buffer.from(payload.buffer, payload.byteOffset, Math.min(payload.length, HEX_PREFIX_BYTES)).toString('hex');
}
