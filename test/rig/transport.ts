// How the host's files reach the rig's machine. The host's root is always there read-only; the variants differ in
// how, and were measured against each other on whole test batches (README.md, "Transport"):
//   9p        QEMU's own 9p server, read-only, mounted with cache=loose (the default);
//   virtiofs  Debian's virtiofsd serving / (cache=always), guest RAM shared with it as a memfd;
//   image     9p for the root, plus the current directory copied into an ext4 image on virtio-blk, mounted
//             over it (a private, writable copy: block I/O instead of 9p for the checkout).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { RigSetupError } from './debian.js';

export const RIG_TRANSPORTS = ['9p', 'virtiofs', 'image'] as const;
export type RigTransport = (typeof RIG_TRANSPORTS)[number];

export interface PreparedTransport {
  /** QEMU arguments for the host's root (and the image). */
  qemuArgs: string[];
  /** What /init reads from the share's `transport` file. */
  initMode: RigTransport;
  stop(): void;
}

const VIRTIOFSD_PATHS = ['/usr/libexec/virtiofsd', '/usr/lib/qemu/virtiofsd'];

function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

function startVirtiofsd(socket: string): ChildProcess {
  const binary = VIRTIOFSD_PATHS.find(existsSync);
  if (!binary) throw new RigSetupError(`no virtiofsd (looked in ${VIRTIOFSD_PATHS.join(', ')})`);
  const daemon = spawn(
    binary,
    [`--socket-path=${socket}`, '-o', 'source=/', '-o', 'cache=always', '-o', 'sandbox=chroot', '-o', 'log_level=err'],
    {
      stdio: ['ignore', 'ignore', 'inherit'],
    },
  );
  for (let waited = 0; !existsSync(socket); waited += 50) {
    if (waited > 10_000 || daemon.exitCode !== null) throw new RigSetupError(`virtiofsd did not create ${socket}`);
    sleepSync(50);
  }
  return daemon;
}

/** An ext4 image holding a copy of `dir` (root-owned, 25 % and 256 MiB spare for what the tests write). */
function imageOf(dir: string, image: string): void {
  const du = spawnSync('du', ['-sb', dir], { encoding: 'utf8' });
  const bytes = Number(du.stdout.split('\t')[0]);
  if (!(bytes > 0)) throw new RigSetupError(`cannot size ${dir}`);
  const size = Math.ceil((bytes * 1.25 + (256 << 20)) / (1 << 20));
  const r = spawnSync('mke2fs', ['-q', '-F', '-t', 'ext4', '-d', dir, '-E', 'root_owner=0:0', image, `${size}M`], {
    encoding: 'utf8',
  });
  if (r.status !== 0) throw new RigSetupError(`mke2fs -d ${dir} failed: ${r.stderr.trim().split('\n').pop()}`);
}

export function prepareTransport(
  kind: RigTransport,
  o: { runDir: string; memory: string; cwd: string },
): PreparedTransport {
  const root9p = ['-virtfs', 'local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap'];
  if (kind === '9p') return { qemuArgs: root9p, initMode: kind, stop() {} };
  if (kind === 'image') {
    const image = join(o.runDir, 'cwd.ext4');
    imageOf(o.cwd, image);
    return {
      qemuArgs: [
        ...root9p,
        '-drive',
        `file=${image},if=none,id=rigcwd,format=raw,cache=unsafe`,
        '-device',
        'virtio-blk-pci,drive=rigcwd',
      ],
      initMode: kind,
      stop() {},
    };
  }
  const socket = join(o.runDir, 'virtiofs.sock');
  const daemon = startVirtiofsd(socket);
  return {
    qemuArgs: [
      '-chardev',
      `socket,id=rigfs,path=${socket}`,
      '-device',
      'vhost-user-fs-pci,chardev=rigfs,tag=hostroot',
      '-object',
      `memory-backend-memfd,id=rigmem,size=${o.memory},share=on`,
      '-machine',
      'memory-backend=rigmem',
    ],
    initMode: kind,
    stop: () => daemon.kill('SIGKILL'),
  };
}
