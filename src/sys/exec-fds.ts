// File descriptors kept open across execve (cpr-exec). Every fd tsvmm opens has FD_CLOEXEC, so an exec closes it;
// the few that must survive are named here:
//
//   keepAcrossExec('vfio:container', fd)       a device (or the QMP server) declares an fd it wants kept
//   forgetAcrossExec('vfio:container')         … and withdraws it when it closes the fd
//
// At the exec, cpr/flows/exec.ts adds the machine's own (guest RAM, taps), clears FD_CLOEXEC on exactly those fds
// (and on stdin/stdout/stderr, which Node marks close-on-exec), sets FD_CLOEXEC on every other fd of the process, and
// tells the new image which fd is which. In the new image the same names are looked up once each:
//
//   const fd = takeInheritedFd('vfio:container') ?? open…   // the old image's fd, or undefined: open anew
//
// and closeUnclaimedInheritedFds() closes whatever nobody took (a QMP socket no longer on the command line). QEMU
// keeps the same kind of list (cpr_save_fd / cpr_find_fd, by name and id).
import { readdirSync } from 'node:fs';
import { fcntl, close, F_GETFD, F_SETFD, FD_CLOEXEC } from './libc.js';

/** A named fd: what the old image kept, and under which name the new image finds it. */
export interface NamedFd {
  readonly name: string;
  readonly fd: number;
}

const kept = new Map<string, number>();
const inherited = new Map<string, number>();

/** Keeps `fd` open across a cpr-exec under `name` (names are unique; the latest registration wins). */
export function keepAcrossExec(name: string, fd: number): void {
  if (!Number.isInteger(fd) || fd < 0) throw new RangeError(`keepAcrossExec(${name}): bad fd ${fd}`);
  kept.set(name, fd);
}

/** The fd under `name` is closed or no longer wanted across an exec. */
export function forgetAcrossExec(name: string): void {
  kept.delete(name);
}

/** Every fd registered to be kept, in registration order. */
export function fdsKeptAcrossExec(): NamedFd[] {
  return [...kept].map(([name, fd]) => ({ name, fd }));
}

/** The new image: the fds the old one handed over (checked by cpr/flows/exec.ts before they get here). */
export function setInheritedFds(fds: readonly NamedFd[]): void {
  for (const { name, fd } of fds) inherited.set(name, fd);
}

/** The fd the old image kept under `name`, handed out once (the caller owns it from then on), or undefined. */
export function takeInheritedFd(name: string): number | undefined {
  const fd = inherited.get(name);
  inherited.delete(name);
  return fd;
}

/** Whether the old image (or process) left an fd under `name` that nobody has taken yet. */
export function hasInheritedFd(name: string): boolean {
  return inherited.has(name);
}

/** Closes the inherited fds nobody took; returns their names. */
export function closeUnclaimedInheritedFds(): string[] {
  const names = [...inherited.keys()];
  for (const fd of inherited.values()) {
    try {
      close(fd);
    } catch {
      /* already gone */
    }
  }
  inherited.clear();
  return names;
}

/** The fd table set for an exec; `restore()` puts every flag back (the exec failed and the process goes on). */
export interface ExecFdTable {
  /** Fds that will survive the exec (the kept ones plus 0, 1, 2). */
  readonly open: readonly number[];
  restore(): void;
}

/** stdin, stdout, stderr: a VMM's console and logs carry on in the new image (Node marks them close-on-exec). */
const STDIO = [0, 1, 2];

/**
 * Clears FD_CLOEXEC on `keep` and on 0-2, and sets it on every other open fd (a library or an inherited fd without
 * it would otherwise leak into the new image: a KVM fd kept open there would keep the old VM alive). Each change
 * is recorded so restore() undoes exactly it.
 */
export function prepareFdsForExec(keep: readonly number[]): ExecFdTable {
  const changed: Array<{ fd: number; flags: number }> = [];
  const survive = new Set([...STDIO, ...keep]);
  const set = (fd: number, cloexec: boolean) => {
    let flags: number;
    try {
      flags = fcntl(fd, F_GETFD);
    } catch {
      return false; // closed meanwhile (the directory listing's own fd, a thread's transient fd)
    }
    const want = cloexec ? flags | FD_CLOEXEC : flags & ~FD_CLOEXEC;
    if (want !== flags) {
      fcntl(fd, F_SETFD, want);
      changed.push({ fd, flags });
    }
    return true;
  };
  const restore = () => {
    for (const { fd, flags } of changed.splice(0).reverse()) {
      try {
        fcntl(fd, F_SETFD, flags);
      } catch {
        /* closed meanwhile */
      }
    }
  };
  try {
    for (const fd of keep) {
      if (!set(fd, false)) throw new Error(`fd ${fd} to keep across exec is not open`);
    }
    for (const fd of STDIO) set(fd, false);
    for (const entry of readdirSync('/proc/self/fd')) {
      const fd = Number(entry);
      if (!survive.has(fd)) set(fd, true);
    }
  } catch (e) {
    restore();
    throw e;
  }
  return { open: [...survive].sort((a, b) => a - b), restore };
}
