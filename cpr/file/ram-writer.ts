// Writing the RAM section: with O_DIRECT where the file system allows it, so a snapshot of many GiB does not
// push the host's page cache out (and is not itself left cached: the next process reads it once, at load). The
// RAM section starts at an aligned file offset (a padding section before it, see format.ts), chunks are aligned
// multiples, and guest RAM is page-aligned mmap memory, so most chunks go straight from guest memory to the
// device without a copy. What cannot go direct — an unaligned tail, a file system that refuses O_DIRECT, a
// kernel that refuses the first direct write — goes through the ordinary descriptor, and the result says why.
import { closeSync, writeSync } from 'node:fs';
import {
  DEFAULT_DIRECT_ALIGNMENT,
  DIRECT_REFUSED,
  alignedBuffer,
  directIoAlignment,
  isAligned,
  openDirect,
} from '../../src/sys/direct-io.js';

/** The largest alignment the RAM section is padded to; a file system asking for more is written buffered. */
export const MAX_RAM_ALIGNMENT = 1 << 20;

/** How the RAM section reached the file. */
export interface RamIo {
  /** 'direct': O_DIRECT (bypassing the page cache); 'buffered': through the page cache. */
  readonly mode: 'direct' | 'buffered';
  /** Why not direct, when buffered. */
  readonly reason?: string;
  /** The file-offset alignment the RAM section starts at. */
  readonly alignment: number;
  /** Bytes written direct and through the page cache (holes — all-zero chunks — are neither). */
  readonly directBytes: number;
  readonly bufferedBytes: number;
  /** Direct bytes that were copied to an aligned buffer first (the source was not aligned in memory). */
  readonly copiedBytes: number;
}

export class RamWriter {
  private direct: number | undefined;
  private reason: string | undefined;
  private readonly memoryAlignment: number;
  private readonly offsetAlignment: number;
  private bounce: Uint8Array | undefined;
  private directBytes = 0;
  private bufferedBytes = 0;
  private copiedBytes = 0;
  /** RAM section start alignment (a multiple of every alignment used). */
  readonly alignment: number;

  /** `fd` is the file's ordinary descriptor (open for writing at `path`); `wantDirect: false` is always buffered. */
  constructor(
    path: string,
    private readonly fd: number,
    wantDirect: boolean,
  ) {
    let memory = DEFAULT_DIRECT_ALIGNMENT;
    let offset = DEFAULT_DIRECT_ALIGNMENT;
    if (!wantDirect) this.reason = 'O_DIRECT not asked for';
    else {
      const found = directIoAlignment(fd);
      if (typeof found === 'string') this.reason = found;
      else if (Math.max(found.memory, found.offset) > MAX_RAM_ALIGNMENT)
        this.reason = `the file system asks for ${Math.max(found.memory, found.offset)}-byte alignment, over ${MAX_RAM_ALIGNMENT}`;
      else {
        memory = found.memory;
        offset = found.offset;
        const direct = openDirect(path, fd);
        if (typeof direct === 'string') this.reason = direct;
        else this.direct = direct;
      }
    }
    // Buffers are page-aligned even where the kernel would take less (ext4 on virtio reports 512): a buffer that
    // starts mid-page costs an extra segment per page, and measured five times slower here.
    this.memoryAlignment = Math.max(DEFAULT_DIRECT_ALIGNMENT, memory);
    this.offsetAlignment = offset;
    this.alignment = Math.max(DEFAULT_DIRECT_ALIGNMENT, offset);
  }

  /** Writes `chunk` at file `position`: the aligned part direct when possible, the rest buffered. */
  write(chunk: Uint8Array, position: number): void {
    let done = 0;
    if (this.direct !== undefined && position % this.offsetAlignment === 0) {
      const directLength = chunk.length - (chunk.length % this.offsetAlignment);
      if (directLength > 0) done = this.writeDirect(chunk.subarray(0, directLength), position);
    }
    if (done < chunk.length) {
      writeAll(this.fd, chunk.subarray(done), position + done);
      this.bufferedBytes += chunk.length - done;
    }
  }

  /** Bytes written direct from the start of `data` (all of it, or 0 when the kernel refused the first write). */
  private writeDirect(data: Uint8Array, position: number): number {
    let source = data;
    if (!isAligned(data, this.memoryAlignment)) {
      if (!this.bounce || this.bounce.length < data.length)
        this.bounce = alignedBuffer(data.length, this.memoryAlignment);
      source = this.bounce.subarray(0, data.length);
      source.set(data);
      this.copiedBytes += data.length;
    }
    try {
      writeAll(this.direct!, source, position);
    } catch (e) {
      // Some file systems accept the open and refuse the write (an alignment they do not report); fall back once,
      // before anything went direct. A later failure (ENOSPC, EIO) is the save's failure.
      const code = (e as NodeJS.ErrnoException).code ?? '';
      if (!DIRECT_REFUSED.has(code) || this.directBytes > 0) throw e;
      this.closeDirect();
      this.reason = `the file system refused an aligned O_DIRECT write (${code})`;
      return 0;
    }
    this.directBytes += data.length;
    return data.length;
  }

  /** How the RAM went out; closes the direct descriptor (the ordinary one, the caller's, is fsynced and closed). */
  finish(): RamIo {
    this.closeDirect();
    return {
      mode: this.directBytes > 0 || (this.reason === undefined && this.bufferedBytes === 0) ? 'direct' : 'buffered',
      ...(this.reason === undefined ? {} : { reason: this.reason }),
      alignment: this.alignment,
      directBytes: this.directBytes,
      bufferedBytes: this.bufferedBytes,
      copiedBytes: this.copiedBytes,
    };
  }

  /** Closes the direct descriptor if open (also on failure paths). */
  closeDirect(): void {
    if (this.direct === undefined) return;
    const fd = this.direct;
    this.direct = undefined;
    closeSync(fd);
  }
}

export function writeAll(fd: number, data: Uint8Array, position: number): void {
  for (let done = 0; done < data.length; ) {
    done += writeSync(fd, data, done, Math.min(data.length - done, 1 << 30), position + done);
  }
}
