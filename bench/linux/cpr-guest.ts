// The guest of bench/linux-cpr: Debian's generic kernel whose /init execs a tiny static program that, every ~1 ms
// (nanosleep), writes one byte to the second serial port (/dev/ttyS1, raw): 0, 1, 2, … 255, 0, … Each VMM passes
// COM2 to its stdout (`-serial stdio`; COM1, the kernel's console, goes to a file), where the bench stamps every
// chunk as it arrives, the same way for tsvmm and for QEMU. The byte values show that no tick was lost or replayed
// across a pause: the new process's first byte follows the old one's last. (A user-space OUT to QEMU's debug port
// after ioperm() was tried first: in the rig that OUT raised #GP under QEMU 10 from the start and under tsvmm after a
// restore — the TSS I/O bitmap path under nested SVM, cause not pinned down — so the ticks go through the UART.)
import { compileC } from '../../test/support/cc.js';
import { scenarioInit } from '../../test/support/linux-guest.js';

/** The ticker's period (nanosleep of 1 ms, plus the loop). */
export const TICK_NS = 1_000_000;
/** The second serial port (COM2): the VMMs give it `-serial stdio`, while COM1 carries the kernel's console. */
const TICK_TTY = '/dev/ttyS1';

const TICKER_C = `
// A user-space ticker for a Linux guest (no SSE: _start gets a stack gcc did not align for it): every ${TICK_NS} ns
// one counting byte to ${TICK_TTY} (raw mode, set by /init).
static long sys3(long n, long a, long b, long c) {
  long r;
  __asm__ volatile("syscall" : "=a"(r) : "a"(n), "D"(a), "S"(b), "d"(c) : "rcx", "r11", "memory");
  return r;
}
void _start(void) {
  struct { long s, ns; } ts = { 0, ${TICK_NS} };
  unsigned char v = 0;
  long fd = sys3(2 /* open */, (long)"${TICK_TTY}", 01 | 0400 /* O_WRONLY | O_NOCTTY */, 0);
  if (fd < 0) sys3(60 /* exit */, 1, 0, 0);
  for (;;) {
    if (sys3(1 /* write */, fd, (long)&v, 1) == 1) v++;
    sys3(35 /* nanosleep */, (long)&ts, 0, 0);
  }
}
`;

/** The ticker as a static executable (no libc), built once into build/cc/. */
export function buildTicker(): string {
  return compileC(TICKER_C, {
    name: 'linux-cpr-ticker',
    flags: [
      '-O2',
      '-Wall',
      '-Werror',
      '-static',
      '-nostdlib',
      '-fno-stack-protector',
      '-fno-pie',
      '-no-pie',
      '-mgeneral-regs-only',
    ],
  });
}

/** Where the ticker goes in the initramfs. */
export const TICKER_PATH = '/ticker';

/** The /init: COM2 in raw mode (bytes go out as they are, no echo), say that the ticker starts, then become it. */
export function tickerInit(modulePaths: readonly string[]): string {
  return scenarioInit(
    [
      `wait_for ${TICK_TTY} || fail "no ${TICK_TTY}"`,
      `stty -F ${TICK_TTY} raw -echo || fail "stty ${TICK_TTY}"`,
      'say "ticker starts"',
      `exec ${TICKER_PATH}`,
    ],
    modulePaths,
  );
}
