// Sections in one buffer, for cpr-transfer (state goes over a socket, not into a file): count, then per section its
// kind code, name, instance, version and payload. Decoding checks every length against the buffer before use.
import { SECTION_KINDS, MAX_SECTIONS, kindOfCode, CheckpointError, type Section } from './format.js';

const utf8 = new TextEncoder();
const fromUtf8 = new TextDecoder('utf-8', { fatal: true });

export function encodeSections(sections: readonly Section[]): Uint8Array {
  const names = sections.map((s) => utf8.encode(s.name));
  const size = 4 + sections.reduce((n, s, i) => n + 1 + 2 + names[i].length + 4 + 4 + 4 + s.payload.length, 0);
  const out = new Uint8Array(size);
  const d = new DataView(out.buffer);
  d.setUint32(0, sections.length, true);
  let at = 4;
  sections.forEach((s, i) => {
    d.setUint8(at, SECTION_KINDS[s.kind]);
    at += 1;
    d.setUint16(at, names[i].length, true);
    at += 2;
    out.set(names[i], at);
    at += names[i].length;
    d.setUint32(at, s.instance, true);
    at += 4;
    d.setUint32(at, s.version, true);
    at += 4;
    d.setUint32(at, s.payload.length, true);
    at += 4;
    out.set(s.payload, at);
    at += s.payload.length;
  });
  return out;
}

export function decodeSections(bytes: Uint8Array): Section[] {
  const d = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let at = 0;
  const need = (n: number, what: string) => {
    if (at + n > bytes.length) throw new CheckpointError(`transferred state truncated in ${what} at byte ${at}`);
  };
  need(4, 'the section count');
  const count = d.getUint32(0, true);
  at = 4;
  if (count > bytes.length)
    throw new CheckpointError(`transferred state claims ${count} sections in ${bytes.length} bytes`);
  if (count > MAX_SECTIONS)
    throw new CheckpointError(`transferred state claims ${count} sections; at most ${MAX_SECTIONS} are accepted`);
  const out: Section[] = [];
  for (let i = 0; i < count; i++) {
    need(3, `section ${i}`);
    const kind = kindOfCode(d.getUint8(at));
    at += 1;
    if (kind === undefined || kind === 'end' || kind === 'ram' || kind === 'padding')
      throw new CheckpointError(`transferred section ${i} has kind code ${d.getUint8(at - 1)}`);
    const nameLength = d.getUint16(at, true);
    at += 2;
    need(nameLength + 12, `section ${i}`);
    let name: string;
    try {
      name = fromUtf8.decode(bytes.subarray(at, at + nameLength));
    } catch {
      throw new CheckpointError(`transferred section ${i} has a name that is not UTF-8`);
    }
    at += nameLength;
    const instance = d.getUint32(at, true);
    at += 4;
    const version = d.getUint32(at, true);
    at += 4;
    const length = d.getUint32(at, true);
    at += 4;
    need(length, `section '${name}'`);
    out.push({ kind, name, instance, version, payload: bytes.slice(at, at + length) });
    at += length;
  }
  if (at !== bytes.length)
    throw new CheckpointError(`transferred state has ${bytes.length - at} bytes after its last section`);
  return out;
}
