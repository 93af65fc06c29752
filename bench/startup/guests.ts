// The start-up bench's guests: tiny multiboot (a.out kludge) kernels assembled at bench time, loadable by tsvmm's
// and QEMU's `-kernel` alike. Their FIRST instruction is `out %al, $0xe9`, so the isa-debugcon byte is the first
// thing the guest does: its timestamp (tsvmm's timestamps=on) or its arrival on stdout is "the first guest
// instruction ran" seen from outside.
//   first  then writes 0 to isa-debug-exit (port 0xf4): the VM ends at once (time to exit minus time to the first
//          instruction is the exit and teardown path)
//   wait   then halts with interrupts off: the VM stays up, idle, until it is killed (for the RSS sample)
import { assembleFlat } from '../../test/support/asm.js';

/** Where the kernels load (1 MiB, as multiboot kernels do). */
const LOAD_ADDRESS = 0x100000;

const header = `
    .code32
    .set MB_MAGIC, 0x1BADB002
    .set MB_FLAGS, 0x00010000          /* address fields valid (a.out kludge): no ELF needed */
    .text
    .globl _start
_start:
mb_header:
    .long MB_MAGIC
    .long MB_FLAGS
    .long -(MB_MAGIC + MB_FLAGS)
    .long mb_header                    /* header_addr */
    .long mb_header                    /* load_addr: the file's first byte */
    .long 0                            /* load_end_addr: 0 = the whole file */
    .long 0                            /* bss_end_addr: no bss */
    .long entry                        /* entry_addr */
entry:
    out %al, $0xe9                     /* the first instruction: one byte to isa-debugcon */
`;

const FIRST = `${header}
    xor %eax, %eax
    out %eax, $0xf4                    /* isa-debug-exit, value 0 */
1:  cli
    hlt
    jmp 1b
`;

const WAIT = `${header}
1:  cli
    hlt                                /* with the in-kernel irqchip this blocks in KVM_RUN: no exits, no CPU */
    jmp 1b
`;

export function firstInstructionKernel(): string {
  return assembleFlat(FIRST, LOAD_ADDRESS);
}

export function waitingKernel(): string {
  return assembleFlat(WAIT, LOAD_ADDRESS);
}
