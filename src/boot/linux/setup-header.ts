// Reading a bzImage's setup header (boot.rst, "The Real-Mode Kernel Header"). Everything in the file is untrusted:
// each field is read only when the header is long enough to hold it and the protocol version defines it, and every
// size or offset is checked against the file before it is used.
import { LinuxBootError } from './error.js';
import {
  BOOT_FLAG_MAGIC,
  HDRS_MAGIC,
  JUMP_SHORT_OPCODE,
  LOADED_HIGH,
  MIN_BOOT_PROTOCOL,
  PROTOCOL_PREF_ADDRESS,
  PROTOCOL_RELOCATABLE,
  PROTOCOL_SYSSIZE32,
  PROTOCOL_XLOADFLAGS,
  SECTOR_SIZE,
  SETUP_HEADER,
  SETUP_HEADER_MAX_END,
  SETUP_SECTS_DEFAULT,
  type SetupHeaderField,
} from './layout.js';
import { hex } from '../../util/hex.js';

/** What the loader needs from a bzImage's setup header, already validated against the file. */
export interface BzImageHeader {
  /** Boot protocol version, (major << 8) | minor. */
  version: number;
  /** "2.15" */
  versionText: string;
  /** Setup sectors after the boot sector (0 in the file means 4). */
  setupSects: number;
  /** File offset of the protected-mode kernel: (setupSects + 1) * 512. */
  setupSize: number;
  /** End of the setup header in the file and in boot_params: 0x202 + the jump's operand. */
  headerEnd: number;
  /** Bytes of the protected-mode kernel in the file (everything after the setup code). */
  kernelFileSize: number;
  /** syssize * 16: the protected-mode code's size according to the header (<= kernelFileSize). */
  syssizeBytes: number;
  loadflags: number;
  /** 2.05+: the protected-mode code may be loaded at any kernelAlignment-aligned address. */
  relocatable: boolean;
  /** 2.05+: alignment a relocatable kernel wants (0 before 2.05). */
  kernelAlignment: number;
  /** 2.10+: minimum alignment as a power of two (0 if not given). */
  minAlignment: number;
  /** 2.12+: XLF_* bits (0 before 2.12). */
  xloadflags: number;
  /** 2.06+: longest command line, without the NUL. */
  cmdlineSize: number;
  /** 2.03+: highest address the initrd may occupy. */
  initrdAddrMax: number;
  /** 2.10+: preferred load address (0 if none). */
  prefAddress: number;
  /** 2.10+: memory the kernel needs from its runtime start before it reads the memory map (0 if not given). */
  initSize: number;
  /** 2.08+: the compressed payload, as an offset from the protected-mode code (0 if none). */
  payloadOffset: number;
  payloadLength: number;
  /** The kernel's version string (from kernel_version), or null if absent or unreadable. */
  kernelVersion: string | null;
  /** The setup header as found in the file: bytes [0x1f1, headerEnd). */
  bytes: Uint8Array;
}

/** Where the header ends for a given protocol: the end of the last field that version defines. */
export function requiredHeaderEnd(version: number): number {
  const end = (f: SetupHeaderField) => SETUP_HEADER[f][0] + SETUP_HEADER[f][1];
  if (version >= 0x020f) return end('kernel_info_offset');
  if (version >= 0x020b) return end('handover_offset');
  if (version >= 0x020a) return end('init_size');
  if (version >= 0x0209) return end('setup_data');
  if (version >= 0x0208) return end('payload_length');
  if (version >= 0x0207) return end('hardware_subarch_data');
  return end('cmdline_size');
}

function versionText(v: number): string {
  return `${v >> 8}.${String(v & 0xff).padStart(2, '0')}`;
}

/** Reads one setup_header field of `image` (little-endian). u64 fields must fit a JS number. */
export function readHeaderField(image: Uint8Array, field: SetupHeaderField): number {
  const [at, size] = SETUP_HEADER[field];
  if (at + size > image.length)
    throw new LinuxBootError(
      `truncated setup header: ${field} at ${hex(at)} is past the end of the file (${image.length} bytes)`,
    );
  const dv = new DataView(image.buffer, image.byteOffset, image.byteLength);
  switch (size) {
    case 1:
      return dv.getUint8(at);
    case 2:
      return dv.getUint16(at, true);
    case 4:
      return dv.getUint32(at, true);
    default: {
      const v = dv.getBigUint64(at, true);
      if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new LinuxBootError(`${field} ${hex(v)} is not a usable address`);
      return Number(v);
    }
  }
}

/** True when `image` carries the boot protocol's "HdrS" signature (it may still be invalid). */
export function hasSetupHeader(image: Uint8Array): boolean {
  const [at] = SETUP_HEADER.header;
  return image.length >= at + 4 && readHeaderField(image, 'header') === HDRS_MAGIC;
}

function readKernelVersion(image: Uint8Array, pointer: number, setupSize: number): string | null {
  if (pointer === 0) return null;
  const start = pointer + 0x200; // "a pointer to a NUL-terminated string, less 0x200"
  if (start >= setupSize || start >= image.length) return null;
  const limit = Math.min(setupSize, image.length, start + 256);
  let end = start;
  while (end < limit && image[end] !== 0) {
    if (image[end] < 0x20 || image[end] > 0x7e) return null;
    end++;
  }
  if (end === limit) return null;
  return new TextDecoder().decode(image.subarray(start, end));
}

/** Parses and validates a bzImage's setup header. Throws LinuxBootError with one line saying what is wrong. */
export function parseSetupHeader(image: Uint8Array): BzImageHeader {
  const [hdrsAt] = SETUP_HEADER.header;
  const [versionAt, versionSize] = SETUP_HEADER.version;
  if (image.length < versionAt + versionSize) {
    throw new LinuxBootError(
      `truncated setup header: the file is ${image.length} bytes, the header needs at least ${hex(versionAt + versionSize)}`,
    );
  }
  if (readHeaderField(image, 'header') !== HDRS_MAGIC)
    throw new LinuxBootError(`not a bzImage: no "HdrS" signature at ${hex(hdrsAt)}`);
  const version = readHeaderField(image, 'version');
  if (version < MIN_BOOT_PROTOCOL) {
    throw new LinuxBootError(
      `boot protocol ${versionText(version)} is too old: ${versionText(MIN_BOOT_PROTOCOL)} or newer is needed`,
    );
  }
  const [jumpAt] = SETUP_HEADER.jump;
  if (image[jumpAt] !== JUMP_SHORT_OPCODE) {
    throw new LinuxBootError(
      `setup header jump at ${hex(jumpAt)} is ${hex(image[jumpAt])}, not a short jmp (0xeb): cannot tell the header's length`,
    );
  }
  const headerEnd = jumpAt + 2 + image[jumpAt + 1];
  const needed = requiredHeaderEnd(version);
  if (headerEnd < needed) {
    throw new LinuxBootError(
      `setup header ends at ${hex(headerEnd)} but protocol ${versionText(version)} defines fields up to ${hex(needed)}`,
    );
  }
  if (headerEnd > SETUP_HEADER_MAX_END) {
    throw new LinuxBootError(
      `setup header would end at ${hex(headerEnd)}, past ${hex(SETUP_HEADER_MAX_END)} where boot_params has no room for it`,
    );
  }
  if (headerEnd > image.length) {
    throw new LinuxBootError(`truncated setup header: it ends at ${hex(headerEnd)}, the file is ${image.length} bytes`);
  }
  const bootFlag = readHeaderField(image, 'boot_flag');
  if (bootFlag !== BOOT_FLAG_MAGIC) throw new LinuxBootError(`boot_flag is ${hex(bootFlag)}, not 0xaa55`);

  const setupSects = readHeaderField(image, 'setup_sects') || SETUP_SECTS_DEFAULT;
  const setupSize = (setupSects + 1) * SECTOR_SIZE;
  if (headerEnd > setupSize) {
    throw new LinuxBootError(
      `setup_sects ${setupSects}: the setup code (${hex(setupSize)} bytes) is shorter than its own header (${hex(headerEnd)})`,
    );
  }
  if (setupSize >= image.length) {
    throw new LinuxBootError(
      `truncated kernel: setup_sects ${setupSects} puts the protected-mode code at ${hex(setupSize)}, the file is ${image.length} bytes`,
    );
  }
  const kernelFileSize = image.length - setupSize;
  const syssize =
    version >= PROTOCOL_SYSSIZE32 ? readHeaderField(image, 'syssize') : readHeaderField(image, 'syssize') & 0xffff;
  const syssizeBytes = syssize * 16;
  if (syssizeBytes > kernelFileSize) {
    throw new LinuxBootError(
      `truncated kernel: syssize says ${hex(syssizeBytes)} bytes of protected-mode code, the file has ${hex(kernelFileSize)}`,
    );
  }
  const loadflags = readHeaderField(image, 'loadflags');
  if (!(loadflags & LOADED_HIGH)) {
    throw new LinuxBootError(
      'this is a zImage (loadflags.LOADED_HIGH clear): only bzImage kernels loaded at 1 MiB or above are supported',
    );
  }
  const relocatable = version >= PROTOCOL_RELOCATABLE && readHeaderField(image, 'relocatable_kernel') !== 0;
  const kernelAlignment = version >= PROTOCOL_RELOCATABLE ? readHeaderField(image, 'kernel_alignment') : 0;
  const has210 = version >= PROTOCOL_PREF_ADDRESS;
  const payloadOffset = version >= 0x0208 ? readHeaderField(image, 'payload_offset') : 0;
  const payloadLength = version >= 0x0208 ? readHeaderField(image, 'payload_length') : 0;
  if (payloadLength !== 0 && payloadOffset + payloadLength > kernelFileSize) {
    throw new LinuxBootError(
      `payload [${hex(payloadOffset)}, +${hex(payloadLength)}) runs past the protected-mode code (${hex(kernelFileSize)} bytes)`,
    );
  }
  return {
    version,
    versionText: versionText(version),
    setupSects,
    setupSize,
    headerEnd,
    kernelFileSize,
    syssizeBytes,
    loadflags,
    relocatable,
    kernelAlignment,
    minAlignment: has210 ? readHeaderField(image, 'min_alignment') : 0,
    xloadflags: version >= PROTOCOL_XLOADFLAGS ? readHeaderField(image, 'xloadflags') : 0,
    cmdlineSize: readHeaderField(image, 'cmdline_size'),
    initrdAddrMax: readHeaderField(image, 'initrd_addr_max'),
    prefAddress: has210 ? readHeaderField(image, 'pref_address') : 0,
    initSize: has210 ? readHeaderField(image, 'init_size') : 0,
    payloadOffset,
    payloadLength,
    kernelVersion: readKernelVersion(image, readHeaderField(image, 'kernel_version'), setupSize),
    bytes: image.slice(SETUP_HEADER.setup_sects[0], headerEnd),
  };
}
