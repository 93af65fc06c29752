// The region capability chain, fed byte buffers as the kernel lays them out: sparse mmap around an MSI-X table,
// MSI-X mappable, a device-specific type, unknown capabilities; and chains that do not hold together, which end
// in one clear error rather than a loop or a read past the info.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { parseIovaRanges, parseRegionCaps, VfioCapabilityError, walkCapChain } from './caps.js';
import {
  VFIO_REGION_INFO_CAP_MSIX_MAPPABLE,
  VFIO_REGION_INFO_CAP_SPARSE_MMAP,
  VFIO_REGION_INFO_CAP_TYPE,
} from './constants.js';

const INFO = 32; // sizeof(struct vfio_region_info): the chain starts after it

/** A region info buffer of `size` bytes with capabilities written at their offsets. */
function info(size: number, caps: { at: number; id: number; version?: number; next: number; body?: number[] }[]) {
  const b = new Uint8Array(size);
  const v = new DataView(b.buffer);
  v.setUint32(0, size, true); // argsz
  for (const c of caps) {
    v.setUint16(c.at, c.id, true);
    v.setUint16(c.at + 2, c.version ?? 1, true);
    v.setUint32(c.at + 4, c.next, true);
    for (const [i, word] of (c.body ?? []).entries()) v.setUint32(c.at + 8 + 4 * i, word, true);
  }
  return b;
}

/** The u32 words of a sparse-mmap body: nr_areas, reserved, then each area's offset and size as two u32 halves. */
const sparse = (areas: [number, number][]): number[] => [
  areas.length,
  0,
  ...areas.flatMap(([offset, size]) => [offset, 0, size, 0]),
];

test('caps: a BAR with its MSI-X table carved out reports the areas around it, in order', () => {
  // QEMU's nvme: a 16 KiB BAR0 with the MSI-X table at 0x2000..0x3000 — mmappable 0..0x2000 and 0x3000..0x4000.
  const body = sparse([
    [0, 0x2000],
    [0x3000, 0x1000],
  ]);
  const b = info(INFO + 8 + body.length * 4, [{ at: INFO, id: VFIO_REGION_INFO_CAP_SPARSE_MMAP, next: 0, body }]);
  const caps = parseRegionCaps(b, INFO, 'region 0');
  assert.equal(caps.sparseMmap, [
    { offset: 0n, size: 0x2000n },
    { offset: 0x3000n, size: 0x1000n },
  ]);
  assert.is(caps.msixMappable, false);
  assert.equal(caps.all, [{ id: VFIO_REGION_INFO_CAP_SPARSE_MMAP, version: 1, offset: INFO }]);
});

test('caps: MSI-X mappable, a device-specific type and an unknown capability are all found along the chain', () => {
  const b = info(96, [
    { at: INFO, id: VFIO_REGION_INFO_CAP_MSIX_MAPPABLE, next: 48 },
    { at: 48, id: VFIO_REGION_INFO_CAP_TYPE, next: 72, body: [0x80008086, 1] },
    { at: 72, id: 99, version: 3, next: 0 },
  ]);
  const caps = parseRegionCaps(b, INFO, 'region 0');
  assert.is(caps.msixMappable, true);
  assert.equal(caps.type, { type: 0x80008086, subtype: 1 });
  assert.is(caps.sparseMmap, null);
  assert.equal(
    caps.all.map((c) => [c.id, c.version, c.offset]),
    [
      [3, 1, 32],
      [2, 1, 48],
      [99, 3, 72],
    ],
  );
});

test('caps: no chain (cap_offset 0) is no capabilities', () => {
  assert.equal(parseRegionCaps(info(INFO, []), 0, 'region 7'), {
    sparseMmap: null,
    msixMappable: false,
    type: null,
    all: [],
  });
});

const throwsCap = (f: () => unknown, pattern: RegExp) => {
  try {
    f();
  } catch (e) {
    assert.instance(e, VfioCapabilityError);
    assert.match((e as Error).message, pattern);
    assert.not.match((e as Error).message, /\n/);
    return;
  }
  assert.unreachable('no error');
};

test('caps: a capability past the bytes the kernel filled (argsz) is an error naming the offset', () => {
  const b = info(40, [{ at: INFO, id: VFIO_REGION_INFO_CAP_MSIX_MAPPABLE, next: 40 }]);
  throwsCap(
    () => parseRegionCaps(b, INFO, 'region 0 of 0000:00:03.0'),
    /^vfio: region 0 of 0000:00:03\.0: capability chain: capability at offset 40 runs past the 40 bytes of the info \(argsz\)$/,
  );
});

test('caps: a chain that loops is an error after one round, not an endless walk', () => {
  const b = info(64, [
    { at: INFO, id: VFIO_REGION_INFO_CAP_MSIX_MAPPABLE, next: 48 },
    { at: 48, id: 99, next: INFO },
  ]);
  throwsCap(() => parseRegionCaps(b, INFO, 'region 2'), /capability at offset 32 is reached twice \(a loop\)$/);
  const self = info(48, [{ at: INFO, id: 99, next: INFO }]);
  throwsCap(() => walkCapChain(self, INFO, INFO, 'region 2'), /reached twice/);
});

test('caps: a capability inside the fixed info struct is an error', () => {
  throwsCap(() => parseRegionCaps(info(64, []), 8, 'region 1'), /offset 8 lies inside the 32-byte info struct$/);
});

test('caps: sparse-mmap areas counted past the end of the info are an error, however large the count', () => {
  const b = info(INFO + 8 + 8 + 16, [
    { at: INFO, id: VFIO_REGION_INFO_CAP_SPARSE_MMAP, next: 0, body: sparse([[0, 0x1000]]) },
  ]);
  new DataView(b.buffer).setUint32(INFO + 8, 0xffffffff, true);
  throwsCap(() => parseRegionCaps(b, INFO, 'region 0'), /has 4294967295 areas, which run past the 64 bytes$/);
  const cut = info(INFO + 12, [{ at: INFO, id: VFIO_REGION_INFO_CAP_SPARSE_MMAP, next: 0 }]);
  throwsCap(() => parseRegionCaps(cut, INFO, 'region 0'), /sparse-mmap capability at offset 32 is cut off$/);
});

test('caps: a walk over any garbage ends within the buffer: at most one step per byte', () => {
  // Random chains: each walk either returns or throws VfioCapabilityError, never anything else.
  let seed = 1;
  const rnd = () => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed;
  };
  for (let n = 0; n < 500; n++) {
    const b = new Uint8Array(INFO + (rnd() % 96));
    for (let i = 0; i < b.length; i++) b[i] = rnd() & 0xff;
    try {
      parseRegionCaps(b, rnd() % (b.length + 8), 'fuzz');
    } catch (e) {
      assert.instance(e, VfioCapabilityError);
    }
  }
});

test("caps: the container's IOVA ranges are read from the type1 info's chain; none means no capability", () => {
  // x86: everything but the interrupt window 0xfee00000-0xfeefffff.
  const at = 24; // sizeof(struct vfio_iommu_type1_info)
  const b = new Uint8Array(at + 16 + 32);
  const v = new DataView(b.buffer);
  v.setUint16(at, 1, true); // VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE
  v.setUint16(at + 2, 1, true);
  v.setUint32(at + 8, 2, true); // nr_iovas
  v.setBigUint64(at + 16, 0n, true);
  v.setBigUint64(at + 24, 0xfedfffffn, true);
  v.setBigUint64(at + 32, 0xfef00000n, true);
  v.setBigUint64(at + 40, 0xffffffffffffn, true);
  assert.equal(parseIovaRanges(b, at, 'iommu'), [
    { start: 0n, end: 0xfedfffffn },
    { start: 0xfef00000n, end: 0xffffffffffffn },
  ]);
  assert.is(parseIovaRanges(b, 0, 'iommu'), null);
  v.setUint32(at + 8, 3, true);
  throwsCap(() => parseIovaRanges(b, at, 'iommu'), /has 3 ranges, which run past the 72 bytes$/);
});

test.run();
