// The QMP socket file: a listening unix socket at PATH with mode 0600 from the first moment anyone can reach it.
//
// How: bind inside a fresh private directory next to PATH (mkdtemp, mode 0700, so nobody else can even reach the
// socket), chmod it 0600, then rename(2) it onto PATH, which is atomic and replaces a socket left there. This needs
// no process-wide umask (which worker threads would share) and sidesteps a libuv trap: closing a listening pipe
// unlinks whatever is at the path it was bound to *at close time* — with a direct bind, an old VMM closing its
// QMP socket would delete the socket of the new VMM that replaced it (the CPR flows start the new process with the
// same arguments). Here libuv only ever unlinks the long-gone private path; we remove PATH ourselves on close, and
// only while it is still our socket (same device and inode).
//
// As in QEMU, an existing socket at PATH is replaced, stale or not (a new process taking over a VM takes over its
// QMP path); any other kind of file there is refused. The private path is at most 11 bytes longer than the
// directory; a path whose directory leaves no room for that under the kernel's 107-byte limit is refused.

import type net from 'node:net';
import { chmodSync, fstatSync, lstatSync, mkdtempSync, renameSync, rmdirSync, unlinkSync, type Stats } from 'node:fs';
import { basename, dirname, join } from 'node:path';

/** sun_path holds 108 bytes including the terminating NUL. */
export const UNIX_PATH_MAX = 107;
const SOCKET_MODE = 0o600;

export interface SocketFile {
  readonly server: net.Server;
  readonly path: string;
  /** The listening socket's fd (libuv's handle: Node has no public accessor), or undefined. */
  readonly fd: number | undefined;
  /** Stops listening and removes PATH if it is still our socket. */
  close(): Promise<void>;
}

function lstatOrNull(path: string): Stats | null {
  try {
    return lstatSync(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
}

/** Listens on `path` (see the file comment); `server` is configured by the caller before listening starts. */
export async function listenSocketFile(
  path: string,
  server: net.Server,
  log: (line: string) => void,
): Promise<SocketFile> {
  if (Buffer.byteLength(path) > UNIX_PATH_MAX)
    throw new Error(`${path}: a unix socket path is at most ${UNIX_PATH_MAX} bytes`);
  const existing = lstatOrNull(path);
  if (existing !== null && !existing.isSocket())
    throw new Error(`${path}: exists and is not a socket; refusing to replace it`);

  const privateDir = mkdtempSync(join(dirname(path), `.${basename(path).slice(0, 1) || 'q'}`));
  const privatePath = join(privateDir, 's');
  try {
    if (Buffer.byteLength(privatePath) > UNIX_PATH_MAX) {
      throw new Error(
        `${path}: the directory name is too long to create the socket safely (keep the directory under ${UNIX_PATH_MAX - 11} bytes)`,
      );
    }
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(privatePath, () => {
        server.off('error', reject);
        resolve();
      });
    });
    chmodSync(privatePath, SOCKET_MODE);
    // Checked again just before the rename: refuse to clobber a non-socket that appeared meanwhile.
    const now = lstatOrNull(path);
    if (now !== null && !now.isSocket()) throw new Error(`${path}: exists and is not a socket; refusing to replace it`);
    renameSync(privatePath, path);
    if (now !== null) log(`${path}: replaced an existing socket file`);
  } catch (e) {
    if (server.listening) await new Promise<void>((resolve) => server.close(() => resolve()));
    try {
      unlinkSync(privatePath);
    } catch {
      /* not created, or already moved */
    }
    rmdirSync(privateDir);
    throw e;
  }
  rmdirSync(privateDir);
  return socketFile(path, server);
}

/**
 * Serves an already listening unix socket `fd` that is bound at `path` (inherited across a cpr-exec). Refused
 * unless `fd` is a socket and `path` a socket file.
 */
export async function adoptSocketFile(path: string, fd: number, server: net.Server): Promise<SocketFile> {
  if (!fstatSync(fd).isSocket()) throw new Error(`${path}: inherited fd ${fd} is not a socket`);
  if (!lstatOrNull(path)?.isSocket()) throw new Error(`${path}: the inherited socket's path is gone`);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ fd }, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return socketFile(path, server);
}

function socketFile(path: string, server: net.Server): SocketFile {
  const ours = lstatSync(path);
  let closing: Promise<void> | undefined;
  return {
    server,
    path,
    get fd() {
      const fd = (server as unknown as { _handle?: { fd?: number } })._handle?.fd;
      return typeof fd === 'number' && fd >= 0 ? fd : undefined;
    },
    close() {
      closing ??= (async () => {
        if (server.listening) await new Promise<void>((resolve) => server.close(() => resolve()));
        const there = lstatOrNull(path);
        if (there !== null && there.dev === ours.dev && there.ino === ours.ino) {
          try {
            unlinkSync(path);
          } catch {
            /* raced with someone else's cleanup */
          }
        }
      })();
      return closing;
    },
  };
}
