// Recognises what kind of image was given to `-kernel`, in QEMU's order: a Linux bzImage ("HdrS" in the setup
// header), then a multiboot v1 header, then ELF by class (a damaged multiboot header wins over ELF32), else flat. Only the kind is decided here; the
// loaders do the full validation (so a damaged multiboot image is reported by the multiboot loader, precisely).
import { elfIdent, ELFCLASS32, ELFCLASS64 } from './elf.js';
import { findMultibootHeader, MultibootError } from './multiboot.js';
import { findPvhEntry } from './linux/elf-kernel.js';

/** Offset of the Linux boot protocol's "HdrS" signature in a bzImage. */
export const LINUX_HDRS_OFFSET = 0x202;
/** "HdrS" as a little-endian u32. */
export const LINUX_HDRS_MAGIC = 0x53726448;

export type KernelKind = 'multiboot' | 'bzimage' | 'elf64' | 'elf32' | 'flat';

export interface DetectedKernel {
  kind: KernelKind;
  /** Whether tsvmm can load this kind yet. */
  loadable: boolean;
  /** One line for messages: what was recognised. */
  description: string;
}

// bzImage and ELF64 go to the Linux loaders (src/boot/linux/); an ELF32 only when it has a PVH entry note.
const LOADABLE: Record<KernelKind, boolean> = { multiboot: true, flat: true, bzimage: true, elf64: true, elf32: false };

function kind(k: KernelKind, description: string, loadable = LOADABLE[k]): DetectedKernel {
  return { kind: k, loadable, description };
}

function pvhText(pvh: number | null): string {
  return pvh === null ? '' : `, PVH entry 0x${pvh.toString(16)}`;
}

/** Decides the format of a `-kernel` image. Never throws. */
export function detectKernelFormat(image: Uint8Array): DetectedKernel {
  if (image.length >= LINUX_HDRS_OFFSET + 4) {
    const dv = new DataView(image.buffer, image.byteOffset, image.byteLength);
    if (dv.getUint32(LINUX_HDRS_OFFSET, true) === LINUX_HDRS_MAGIC) {
      return kind(
        'bzimage',
        `Linux bzImage (boot protocol ${image.length >= 0x208 ? `${image[0x207]}.${String(image[0x206]).padStart(2, '0')}` : '?'})`,
      );
    }
  }
  let multibootProblem: string | null = null;
  try {
    const header = findMultibootHeader(image);
    if (header)
      return kind(
        'multiboot',
        `multiboot v1 kernel (header at ${header.offset}, flags 0x${header.flags.toString(16)})`,
      );
  } catch (e) {
    if (!(e instanceof MultibootError)) throw e;
    multibootProblem = e.message;
  }
  const ident = elfIdent(image);
  if (ident?.elfClass === ELFCLASS64)
    return kind('elf64', `64-bit ELF (e_machine ${ident.machine}${pvhText(findPvhEntry(image))})`);
  // A multiboot magic that is not part of a valid header (findMultibootHeader threw): most likely a damaged
  // multiboot kernel, ELF32 or not. Say so, and let the multiboot loader give the exact reason.
  if (multibootProblem !== null) return kind('multiboot', `damaged multiboot kernel? ${multibootProblem}`);
  if (ident?.elfClass === ELFCLASS32) {
    const pvh = findPvhEntry(image);
    return kind(
      'elf32',
      `32-bit ELF without a multiboot header (e_machine ${ident.machine}${pvh === null ? ', no PVH note' : pvhText(pvh)})`,
      pvh !== null,
    );
  }
  return kind('flat', `flat binary (${image.length} bytes, no recognised header)`);
}
