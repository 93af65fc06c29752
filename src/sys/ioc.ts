// ioctl request numbers as <asm-generic/ioctl.h>'s _IOC(dir, type, nr, size) builds them (x86 uses the generic
// encoding): dir << 30 | size << 16 | type << 8 | nr. KVM's requests (kvm/bindings/ioctls.ts), TUN/TAP's (tun.ts)
// and BLKGETSIZE64 (blockdev.ts) are all made here; each file's ABI test checks them against the C headers.

// Direction bits as seen from user space.
export const IOC_NONE = 0;
export const IOC_WRITE = 1; // user space writes the argument (kernel reads)
export const IOC_READ = 2; // user space reads the argument (kernel writes)

const IOC_SIZEBITS = 14;

/** _IOC(dir, type, nr, size): `type` is the request's magic byte (0xAE for KVM, 'T' for TUN/TAP). */
export function ioc(dir: number, type: number, nr: number, size: number): number {
  if (size >= 1 << IOC_SIZEBITS) throw new Error(`ioctls: argument size ${size} does not fit the size field`);
  // `>>> 0` keeps requests with the read bit (bit 31) positive, as unsigned long wants them.
  return ((dir << 30) | (size << 16) | (type << 8) | nr) >>> 0;
}
