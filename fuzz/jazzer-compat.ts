// Jazzer.js 4.0.0 ships its libFuzzer addon prebuilt against glibc 2.38 and GCC 13's libstdc++, newer than Debian 12
// (glibc 2.36, GLIBCXX_3.4.30): the addon fails to load with "version `GLIBC_2.38' not found". Its source is not in
// the npm package and its build fetches LLVM's compiler-rt, so we cannot rebuild it here; instead this rewrites the
// three references that need the newer libraries, leaving the machine code untouched:
// - `__isoc23_strtol` / `__isoc23_strtoul` (glibc 2.38's C23 entry points, used by libFuzzer's flag parsing) are
//   pointed at `strtol` / `strtoul` (the suffix of the same string) and made unversioned; they differ only in that
//   C23 also parses a `0b` prefix, which no flag we pass uses;
// - the GLIBC_2.38 and GLIBCXX_3.4.32 version needs become weak, so a library without them is no longer fatal.
//   GLIBCXX_3.4.32 is needed only for `std::ios_base_library_init`, a symbol GCC 13's <iostream> names to pull in
//   that libstdc++ and that nothing calls (the addon has no relocation against it).
// The patch is applied to a copy, renamed into place; the original is kept beside it as `.orig`.
import { copyFileSync, existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';

const SHT_DYNSYM = 11;
const SHT_GNU_VERNEED = 0x6ffffffe;
const SHT_GNU_VERSYM = 0x6fffffff;
const VER_NDX_GLOBAL = 1;
const VER_FLG_WEAK = 0x2;
const ISOC23_PREFIX = '__isoc23_';
const RENAMED = new Set(['__isoc23_strtol', '__isoc23_strtoul']);
const WEAKENED = new Set(['GLIBC_2.38', 'GLIBCXX_3.4.32']);

interface Section {
  type: number;
  offset: number;
  size: number;
  link: number;
  entsize: number;
}

function sections(elf: Buffer): Section[] {
  const shoff = Number(elf.readBigUInt64LE(0x28));
  const shentsize = elf.readUInt16LE(0x3a);
  const shnum = elf.readUInt16LE(0x3c);
  return Array.from({ length: shnum }, (_, i) => {
    const at = shoff + i * shentsize;
    return {
      type: elf.readUInt32LE(at + 4),
      offset: Number(elf.readBigUInt64LE(at + 0x18)),
      size: Number(elf.readBigUInt64LE(at + 0x20)),
      link: elf.readUInt32LE(at + 0x28),
      entsize: Number(elf.readBigUInt64LE(at + 0x38)),
    };
  });
}

const cString = (elf: Buffer, at: number): string => elf.toString('latin1', at, elf.indexOf(0, at));

/** Rewrites `elf` in place; returns how many references it changed (0: nothing to do). */
export function patchAddon(elf: Buffer): number {
  if (elf.readUInt32BE(0) !== 0x7f454c46 || elf[4] !== 2 || elf[5] !== 1) throw new Error('not a 64-bit LE ELF');
  const all = sections(elf);
  const dynsym = all.find((s) => s.type === SHT_DYNSYM)!;
  const versym = all.find((s) => s.type === SHT_GNU_VERSYM)!;
  const verneed = all.find((s) => s.type === SHT_GNU_VERNEED)!;
  const dynstr = all[dynsym.link].offset;
  let changed = 0;
  for (let i = 0; i < dynsym.size / dynsym.entsize; i++) {
    const at = dynsym.offset + i * dynsym.entsize;
    const name = cString(elf, dynstr + elf.readUInt32LE(at));
    if (!RENAMED.has(name)) continue;
    elf.writeUInt32LE(elf.readUInt32LE(at) + ISOC23_PREFIX.length, at);
    elf.writeUInt16LE(VER_NDX_GLOBAL, versym.offset + i * 2);
    changed++;
  }
  const verstr = all[verneed.link].offset;
  for (let need = verneed.offset; ; ) {
    const count = elf.readUInt16LE(need + 2);
    for (let aux = need + elf.readUInt32LE(need + 8), n = 0; n < count; n++) {
      const flags = elf.readUInt16LE(aux + 4);
      if (WEAKENED.has(cString(elf, verstr + elf.readUInt32LE(aux + 8))) && !(flags & VER_FLG_WEAK)) {
        elf.writeUInt16LE(flags | VER_FLG_WEAK, aux + 4);
        changed++;
      }
      aux += elf.readUInt32LE(aux + 12);
    }
    const next = elf.readUInt32LE(need + 12);
    if (next === 0) break;
    need += next;
  }
  return changed;
}

/** Patches the addon file at `path` when it needs it; says what it did. */
export function patchAddonFile(path: string): string {
  const elf = readFileSync(path);
  const changed = patchAddon(elf);
  if (changed === 0) return `${path}: already loads on this libc`;
  if (!existsSync(`${path}.orig`)) copyFileSync(path, `${path}.orig`);
  writeFileSync(`${path}.tmp`, elf);
  renameSync(`${path}.tmp`, path);
  return `${path}: ${changed} version references relaxed for glibc < 2.38 / GLIBCXX < 3.4.32`;
}
