// cpr-transfer's new side refusing a hand-over: whatever the old process sent, every fd that arrived is closed
// again, so a refused (or hostile) hand-over leaves the process with exactly the fds it had. Runs without KVM: the
// refusals come before any VM exists.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as libc from '../../src/sys/libc.js';
import { takeInheritedFd } from '../../src/sys/exec-fds.js';
import type { BackendRecord } from '../../src/memory/backend.js';
import { CprChannel } from './channel.js';
import { transferIn } from './transfer.js';
import { PhaseClock } from './timings.js';

const dir = mkdtempSync(join(tmpdir(), 'tsvmm-transfer-'));
let socketNo = 0;
const openFds = (): number => readdirSync('/proc/self/fd').length;
const MiB = 1 << 20;

const memfdRecord = (size: number): BackendRecord => ({
  kind: 'memfd',
  size,
  offset: 0,
  share: true,
  hugetlb: false,
  hugetlbSize: 0,
  path: null,
  fd: 9,
});

/** The old side's first frame, as transferOut sends it (or spoiled), with fresh fds it closes after sending. */
interface FirstFrame {
  type?: string;
  header: Record<string, unknown>;
  fds: () => number[];
}

/** Runs transferIn against a fake old process sending `frame`; resolves with the refusal's message. */
async function refusal(frame: FirstFrame): Promise<string> {
  const path = join(dir, `cpr${socketNo++}.sock`);
  const incoming = transferIn(path, new PhaseClock('new'), 5000);
  const old = CprChannel.connect(path);
  const fds = frame.fds();
  try {
    old.send({ type: frame.type ?? 'ram', header: frame.header, fds, payload: new Uint8Array(0) });
  } finally {
    for (const fd of fds) libc.close(fd); // the kernel gave the receiver its own copies
  }
  try {
    await incoming;
  } catch (e) {
    return (e as Error).message;
  } finally {
    old.close();
  }
  throw new Error('transferIn accepted the hand-over');
}

const memfd = (size: number) => {
  const fd = libc.memfdCreate('transfer-test', libc.MFD_CLOEXEC);
  libc.ftruncate(fd, size);
  return fd;
};
const eventfd = () => libc.eventfd(0, libc.EFD_CLOEXEC);

/** The process's fd count is the same before and after `refused` (a warm-up run first loads every module). */
async function sameFdCount(frame: FirstFrame, pattern: RegExp): Promise<void> {
  await refusal(frame);
  const before = openFds();
  const message = await refusal(frame);
  assert.match(message, pattern);
  assert.is(openFds(), before, `fds before and after the refusal (${message})`);
}

test('transfer in: a first frame of another protocol version is refused and its fds are closed', async () => {
  await sameFdCount(
    {
      header: { protocol: 99, record: memfdRecord(2 * MiB), taps: ['tap0'] },
      fds: () => [memfd(2 * MiB), eventfd()],
    },
    /expected the RAM hand-over \(protocol 1\), got 'ram'/,
  );
});

test('transfer in: a message other than the RAM hand-over is refused and its fds are closed', async () => {
  await sameFdCount(
    { type: 'state', header: {}, fds: () => [memfd(MiB), eventfd(), eventfd()] },
    /expected the RAM hand-over/,
  );
});

test('transfer in: RAM that does not match its record is refused; the RAM, tap and VFIO fds are all closed', async () => {
  await sameFdCount(
    {
      header: { protocol: 1, record: memfdRecord(4 * MiB), taps: ['tap0'], vfio: ['vfio:container'] },
      fds: () => [memfd(2 * MiB), eventfd(), eventfd()],
    },
    /the fd holds 2 MiB .* but the record says 4 MiB/,
  );
  assert.is(takeInheritedFd('vfio:container'), undefined, 'no VFIO fd is left for a machine to adopt');
});

test('transfer in: a malformed RAM record is refused with every fd closed', async () => {
  await sameFdCount(
    {
      header: { protocol: 1, record: { ...memfdRecord(MiB), size: -1 }, taps: [] },
      fds: () => [memfd(MiB)],
    },
    /size is not a positive integer/,
  );
  await sameFdCount(
    { header: { protocol: 1, record: { ...memfdRecord(MiB), kind: 'anon' }, taps: [] }, fds: () => [memfd(MiB)] },
    /anonymous memory, which no file descriptor carries/,
  );
});

test.after(() => rmSync(dir, { recursive: true, force: true }));
test.run();
