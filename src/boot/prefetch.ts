// Reading the guest images while tsvmm loads itself. A Linux vmlinux is ~50 MB: read synchronously at machine
// creation it costs ~30 ms of start-up, but the launcher (src/cli/code-cache-loader.ts) can start reading it on the
// libuv thread pool before the main bundle is even compiled, and machine creation then takes the bytes.
//
// The launcher and the main bundle are separate bundles, so the reads are handed over on globalThis. A failed or
// missing prefetch is not an error here: the loader reads the file itself and reports its own error.
import { openSync, fstatSync, read, close } from 'node:fs';

const KEY = '__tsvmmPrefetch';

type Prefetches = Map<string, Promise<Uint8Array | null>>;

const table = (): Prefetches => {
  const g = globalThis as unknown as Record<string, Prefetches | undefined>;
  return (g[KEY] ??= new Map());
};

/** Launcher: starts reading the files `tsvmm run`'s arguments name as guest images (-kernel, -initrd). */
export function prefetchBootImages(argv: readonly string[]): void {
  if (argv[0] !== 'run') return;
  for (let i = 1; i + 1 < argv.length; i++) {
    const flag = argv[i].replace(/^--?/, '');
    if (flag !== 'kernel' && flag !== 'initrd') continue;
    const path = argv[i + 1];
    // A multiboot module list ("a.elf arg,b.elf") is not one file: only plain paths are read ahead.
    if (flag === 'initrd' && /[ ,]/.test(path)) continue;
    table().set(path, readWhole(path));
  }
}

/**
 * One read request for the whole file. fs.promises.readFile reads in chunks, each needing a turn of the main
 * thread's event loop, which is busy compiling the bundle: a single request runs on the thread pool to the end.
 */
function readWhole(path: string): Promise<Uint8Array | null> {
  let fd: number;
  let size: number;
  try {
    fd = openSync(path, 'r');
    size = fstatSync(fd).size;
  } catch {
    return Promise.resolve(null);
  }
  const buffer = Buffer.allocUnsafe(size);
  return new Promise(resolve => read(fd, buffer, 0, size, 0, (error, bytesRead) => {
    close(fd, () => {});
    resolve(error || bytesRead !== size ? null : buffer);
  }));
}

/** Machine creation: the prefetched bytes of every file that was read successfully, by path. */
export async function takePrefetchedImages(): Promise<Map<string, Uint8Array>> {
  const out = new Map<string, Uint8Array>();
  const pending = table();
  for (const [path, read] of pending) {
    const bytes = await read;
    if (bytes) out.set(path, bytes);
  }
  pending.clear();
  return out;
}
