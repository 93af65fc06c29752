// The DMA side of a VFIO hand-over (vfio-cpr.ts) against a fake container that keeps the kernel's rules for
// process addresses (vfio_iommu_type1.c, VFIO_UPDATE_VADDR): an invalidate needs the mapping's address valid, an
// update needs it invalid and the mapping's exact range; anything else is EINVAL and changes nothing. Old and new
// process share the one container, as they share the kernel's.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Errno } from '../sys/errno.js';
import { type DmaRange, type VfioCprContainer, VfioHandover } from './vfio-cpr.js';

const MiB = 1n << 20n;

/** What the kernel holds per mapping: the process address it pins through, or none (invalidated). */
class FakeContainer implements VfioCprContainer {
  readonly mappings = new Map<bigint, { size: bigint; vaddr: bigint | null }>();
  readonly calls: string[] = [];

  constructor(ranges: readonly DmaRange[]) {
    for (const r of ranges) this.mappings.set(r.iova, { size: r.size, vaddr: r.vaddr });
  }

  private find(iova: bigint, size: bigint, op: string) {
    const m = this.mappings.get(iova);
    if (!m) throw errno(Errno.ENOENT, `${op}: no mapping at 0x${iova.toString(16)}`);
    if (m.size !== size) throw errno(Errno.EINVAL, `${op}: 0x${iova.toString(16)} is not a mapping's exact range`);
    return m;
  }

  invalidateVaddr(iova: bigint, size: bigint): void {
    this.calls.push(`invalidate 0x${iova.toString(16)}`);
    const m = this.find(iova, size, 'invalidate');
    if (m.vaddr === null) throw errno(Errno.EINVAL, 'invalidate: the address is invalid already');
    m.vaddr = null;
  }

  updateVaddr(iova: bigint, size: bigint, vaddr: bigint): void {
    this.calls.push(`update 0x${iova.toString(16)}`);
    const m = this.find(iova, size, 'update');
    if (m.vaddr !== null) throw errno(Errno.EINVAL, 'update: the address is valid (another process gave its own)');
    m.vaddr = vaddr;
  }

  canUpdateVaddr(): boolean {
    return true;
  }

  /** Each mapping's process address, by IOVA. */
  addresses(): Record<string, string | null> {
    return Object.fromEntries(
      [...this.mappings].map(([iova, m]) => [
        `0x${iova.toString(16)}`,
        m.vaddr === null ? null : `0x${m.vaddr.toString(16)}`,
      ]),
    );
  }
}

/** As vfio/container.ts throws: an Error with the errno. */
const errno = (n: number, message: string) => Object.assign(new Error(message), { errno: n });

/** Guest RAM below and above the PCI hole, as mapped by the old process and by the new one. */
const oldRanges: DmaRange[] = [
  { iova: 0n, size: 2048n * MiB, vaddr: 0x7f00_0000_0000n },
  { iova: 4096n * MiB, size: 1024n * MiB, vaddr: 0x7f00_8000_0000n },
];
const newRanges: DmaRange[] = oldRanges.map((r) => ({ ...r, vaddr: r.vaddr + 0x1000_0000_0000n }));
const OLD = { '0x0': '0x7f0000000000', '0x100000000': '0x7f0080000000' };
const NEW = { '0x0': '0x8f0000000000', '0x100000000': '0x8f0080000000' };

const oldProcess = (c: VfioCprContainer) => new VfioHandover(c, oldRanges, [], false);
const newProcess = (c: VfioCprContainer) => new VfioHandover(c, newRanges, [], true);

test('vfio hand-over: the old process forgets its addresses, the new one gives its own; the mappings stay', () => {
  const kernel = new FakeContainer(oldRanges);
  const old = oldProcess(kernel);
  old.invalidate();
  assert.equal(kernel.addresses(), { '0x0': null, '0x100000000': null });
  const next = newProcess(kernel);
  assert.ok(next.beginAdoption());
  next.endAdoption();
  next.completeAdoption();
  assert.equal(kernel.addresses(), NEW);
  old.handedOver = true;
  assert.not.ok(old.ownsDma, 'the old process must not unmap what the new one uses');
  assert.ok(next.ownsDma);
});

test('vfio hand-over: failed before the new process touched the mappings, the old one gives its addresses back', () => {
  const kernel = new FakeContainer(oldRanges);
  const old = oldProcess(kernel);
  old.invalidate();
  old.revalidate();
  assert.equal(kernel.addresses(), OLD);
  assert.equal(kernel.calls, ['invalidate 0x0', 'invalidate 0x100000000', 'update 0x0', 'update 0x100000000']);
  old.revalidate(); // nothing left to give back
  assert.is(kernel.calls.length, 4);
});

test('vfio hand-over: the new process gave its addresses and then failed: the old one takes them back (invalidate, then update)', () => {
  const kernel = new FakeContainer(oldRanges);
  const old = oldProcess(kernel);
  old.invalidate();
  const next = newProcess(kernel);
  next.beginAdoption();
  next.endAdoption(); // the restore threw: no completeAdoption
  assert.equal(kernel.addresses(), NEW);
  assert.not.ok(next.ownsDma, 'the failed new process must not unmap the mappings the old one takes back');
  old.revalidate();
  assert.equal(kernel.addresses(), OLD);
  assert.ok(old.ownsDma);
});

test('vfio hand-over: some mappings updated by the new process, some not: each one goes back its own way', () => {
  const kernel = new FakeContainer(oldRanges);
  const old = oldProcess(kernel);
  old.invalidate();
  kernel.updateVaddr(newRanges[0].iova, newRanges[0].size, newRanges[0].vaddr); // the new process got this far
  kernel.calls.length = 0;
  old.revalidate();
  assert.equal(kernel.addresses(), OLD);
  assert.equal(kernel.calls, ['update 0x0', 'invalidate 0x0', 'update 0x0', 'update 0x100000000']);
});

test('vfio hand-over: a mapping that cannot be taken back does not keep the others from it; its error is thrown after', () => {
  const kernel = new FakeContainer(oldRanges);
  const old = oldProcess(kernel);
  old.invalidate();
  kernel.mappings.delete(0n); // gone (ENOENT): nothing to take back
  assert.throws(() => old.revalidate(), /update: no mapping at 0x0/);
  assert.equal(kernel.addresses(), { '0x100000000': '0x7f0080000000' });
});

test('vfio hand-over: an invalidate refused part-way gives the addresses already forgotten back', () => {
  const kernel = new FakeContainer(oldRanges);
  kernel.mappings.get(4096n * MiB)!.vaddr = null; // already invalid: the kernel refuses
  assert.throws(() => oldProcess(kernel).invalidate(), /invalid already/);
  assert.equal(kernel.addresses(), { '0x0': '0x7f0000000000', '0x100000000': null });
});

test.run();
