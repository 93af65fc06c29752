// Block devices as disk images: their size is not in st_size (0 for a block device) but behind the BLKGETSIZE64
// ioctl of <linux/fs.h> (checked against the header by blockdev-abi.test.ts).
import { ioctlPtr } from './libc.js';
import { ioc, IOC_READ } from './ioc.js';

const SIZEOF_U64 = 8;
/** _IOR(0x12, 114, size_t): the device's size in bytes (u64 *). */
export const BLKGETSIZE64 = ioc(IOC_READ, 0x12, 114, SIZEOF_U64);

/** The size in bytes of the block device open on `fd`. */
export function blockDeviceSize(fd: number): number {
  const size = new BigUint64Array(1);
  ioctlPtr(fd, BLKGETSIZE64, size, 'BLKGETSIZE64');
  return Number(size[0]);
}
