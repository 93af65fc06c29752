// Disks that fail the way real ones do, for the host-error tests (root only: mount and losetup).
//
// - smallTmpfs: a file system that runs out of space. A sparse image on it fails its pwrite with ENOSPC at once.
// - failingLoopDevice: a loop device over a sparse file on a small tmpfs. Writes to the device land in the host's
//   page cache and succeed; their writeback fails inside the loop driver once the tmpfs is full, so fdatasync on the
//   device returns EIO (the data never reached the "disk") — and only once: Linux marks the pages clean.
// - failingExt4: ext4 on such a loop device, mounted. The file system believes it has space; its writeback fails
//   underneath, and fsync of a file returns the device's error (ENOSPC as the loop driver reports it).
// Each returns the one-line reason when this host cannot provide it, for testIf.
import { execFileSync, spawnSync } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, rmSync, truncateSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface Scratch {
  /** A directory (the mount point), or the loop device's path. */
  readonly path: string;
  /** Unmounts, detaches, removes: safe to call once, in a finally. */
  cleanup(): void;
}

const MIB = 1 << 20;

/** Why this host cannot build failing disks, or null. */
export function hostLacksFailingDisks(): string | null {
  if (process.getuid?.() !== 0) return 'mounting a tmpfs and attaching loop devices needs root';
  if (!existsSync('/dev/loop-control') || spawnSync('losetup', ['--find']).status !== 0)
    return 'no free loop device (or no losetup) on this host';
  if (spawnSync('mkfs.ext4', ['-V']).error) return 'no mkfs.ext4 on this host';
  return null;
}

/** A tmpfs of `bytes` mounted on a fresh private directory. */
export function smallTmpfs(bytes: number): Scratch {
  const dir = mkdtempSync(join(tmpdir(), 'tsvmm-small-fs-'));
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${Math.ceil(bytes / 1024)}k,mode=0700`, 'tsvmm-small-fs', dir], {
      stdio: 'pipe',
    });
  } catch (e) {
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
  return {
    path: dir,
    cleanup: () => {
      spawnSync('umount', [dir]);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export interface LoopScratch extends Scratch {
  /** The file behind the device: what really reached the "disk". */
  readonly backing: string;
}

/**
 * A loop device of `sizeBytes` whose first ~`goodBytes` can be written back (less what the tmpfs itself uses) and
 * the rest not.
 */
export function failingLoopDevice(goodBytes: number, sizeBytes: number): LoopScratch {
  const fs = smallTmpfs(goodBytes);
  const backing = join(fs.path, 'backing.img');
  let device: string | null = null;
  try {
    closeSync(openSync(backing, 'wx', 0o600));
    truncateSync(backing, sizeBytes); // sparse: the tmpfs, not the file's size, bounds what can be written back
    device = execFileSync('losetup', ['--find', '--show', backing], { encoding: 'utf8' }).trim();
  } catch (e) {
    fs.cleanup();
    throw e;
  }
  return {
    path: device,
    backing,
    cleanup: () => {
      spawnSync('losetup', ['-d', device]);
      fs.cleanup();
    },
  };
}

export interface MountedScratch extends Scratch {
  /** Unmounts and mounts it again, so what is read afterwards comes from the disk, not the page cache. */
  remount(): void;
}

/** ext4 (no journal: its metadata is written once, at mkfs) of `sizeBytes` over a disk that holds ~`goodBytes`. */
export function failingExt4(goodBytes: number, sizeBytes = 64 * MIB): MountedScratch {
  const disk = failingLoopDevice(goodBytes, sizeBytes);
  const dir = mkdtempSync(join(tmpdir(), 'tsvmm-failing-ext4-'));
  try {
    execFileSync('mkfs.ext4', ['-q', '-F', '-O', '^has_journal', '-E', 'lazy_itable_init=1,nodiscard', disk.path], {
      stdio: 'pipe',
    });
    execFileSync('mount', [disk.path, dir], { stdio: 'pipe' });
  } catch (e) {
    rmSync(dir, { recursive: true, force: true });
    disk.cleanup();
    throw e;
  }
  return {
    path: dir,
    remount: () => {
      execFileSync('umount', [dir]);
      execFileSync('mount', [disk.path, dir], { stdio: 'pipe' });
    },
    cleanup: () => {
      spawnSync('umount', [dir]);
      rmSync(dir, { recursive: true, force: true });
      disk.cleanup();
    },
  };
}
