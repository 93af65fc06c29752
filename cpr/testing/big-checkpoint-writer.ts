// A process that writes one checkpoint with `size` bytes of non-zero RAM to `path`, slowly enough (a short pause
// per chunk) that a test can kill it at a chosen point of the save: `node big-checkpoint-writer.js PATH SIZE`.
// Used by cpr/file/write-faults.test.ts; the RAM is a pattern, so no guest and no /dev/kvm are needed.
import { jsonSection, writeCheckpoint, type RamSource } from '../file/checkpoint-file.js';

const CHUNK_PAUSE_MS = 2;

export function patternRamSource(size: number, pauseMs = 0): RamSource {
  const block = new Uint8Array(8 << 20);
  for (let i = 0; i < block.length; i++) block[i] = ((i * 131) >>> 3) | 1; // never zero: no holes in the file
  const pause = new Int32Array(new SharedArrayBuffer(4));
  return {
    size,
    read(offset, length) {
      if (pauseMs) Atomics.wait(pause, 0, 0, pauseMs);
      const out = length === block.length ? block : block.subarray(0, length);
      new DataView(out.buffer, out.byteOffset).setFloat64(0, offset, true); // each chunk differs from the last
      return out;
    },
  };
}

export function writePatternCheckpoint(path: string, size: number, pauseMs = 0): void {
  writeCheckpoint(path, {
    sections: [jsonSection('config', 'machine', { ram: size, cpus: 1 })],
    ram: patternRamSource(size, pauseMs),
  });
}

if (process.argv[1]?.endsWith('big-checkpoint-writer.js')) {
  const [path, size] = process.argv.slice(2);
  writePatternCheckpoint(path, Number(size), CHUNK_PAUSE_MS);
}
