// The guest of bench/linux-cpr: Debian's generic kernel whose /init execs a tiny static program that, every ~1 ms
// (nanosleep), writes one byte to QEMU's debug console port (0xe9) from user space (ioperm): 0, 1, 2, … 255, 0, …
// Each VMM passes the port to its stdout (`-debugcon stdio`), where the bench stamps every chunk as it arrives,
// the same way for tsvmm and for QEMU. The byte values show that no tick was lost or replayed across a pause: the
// new process's first byte follows the old one's last. An OUT from user space needs no driver and no interrupt, so
// a device model's state (a UART's) cannot hold the stream up after the restore.
import { compileC } from '../../test/support/cc.js';
import { scenarioInit } from '../../test/support/linux-guest.js';

/** Ticks per second the ticker aims at (nanosleep of 1 ms, plus the loop). */
export const TICK_NS = 1_000_000;

const TICKER_C = `
// A user-space ticker (no SSE: _start gets a stack gcc did not align for it) for a Linux guest: ioperm(0xe9), then OUT a counting byte every ${TICK_NS} ns.
static long sys3(long n, long a, long b, long c) {
  long r;
  __asm__ volatile("syscall" : "=a"(r) : "a"(n), "D"(a), "S"(b), "d"(c) : "rcx", "r11", "memory");
  return r;
}
void _start(void) {
  struct { long s, ns; } ts = { 0, ${TICK_NS} };
  unsigned char v = 0;
  if (sys3(173 /* ioperm */, 0xe9, 1, 1) != 0) sys3(60 /* exit */, 1, 0, 0);
  for (;;) {
    __asm__ volatile("outb %0, $0xe9" : : "a"(v));
    v++;
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

/** The /init: say that the ticker starts, then become it. */
export function tickerInit(modulePaths: readonly string[]): string {
  return scenarioInit(['say "ticker starts"', `exec ${TICKER_PATH}`], modulePaths);
}
