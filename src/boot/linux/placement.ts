// Where things go in guest RAM for a Linux boot: which ranges are usable (the e820 map, and the RAM that is really
// there), whether a fixed range is free, and the highest free page-aligned spot under a ceiling (for the initrd, as
// QEMU and Firecracker place it: at the top of low RAM).
import { formatRange, rangesOverlap, type GuestRange } from '../cpu-modes.js';
import { E820_RAM, type E820Entry } from '../e820.js';
import type { GuestMemory } from '../../memory/guest-memory.js';
import { LinuxBootError } from './error.js';
import { hex } from '../../util/hex.js';

export const PAGE_SIZE = 0x1000;
const FOUR_GIB = 2 ** 32;

/** A range with a name, for "overlaps the zero page" messages. */
export interface NamedRange extends GuestRange {
  what: string;
}

/**
 * Usable RAM according to the map: E820_RAM entries, sorted, touching ones joined, minus anything another entry
 * marks otherwise (a map may list a reserved ACPI area inside a RAM entry; the kernel lets the reservation win, and
 * so do we).
 */
export function usableRanges(map: readonly E820Entry[]): GuestRange[] {
  const joined: GuestRange[] = [];
  const ram = map
    .filter((e) => e.type === E820_RAM)
    .map((e) => ({ start: e.addr, end: e.addr + e.size }))
    .sort((a, b) => a.start - b.start);
  for (const r of ram) {
    const last = joined[joined.length - 1];
    if (last && r.start <= last.end) last.end = Math.max(last.end, r.end);
    else joined.push({ ...r });
  }
  const holes = map.filter((e) => e.type !== E820_RAM).map((e) => ({ start: e.addr, end: e.addr + e.size }));
  let out = joined;
  for (const h of holes) {
    out = out.flatMap((r) => {
      if (!rangesOverlap(r, h)) return [r];
      return [
        { start: r.start, end: h.start },
        { start: h.end, end: r.end },
      ].filter((p) => p.end > p.start);
    });
  }
  return out;
}

/** True when [r.start, r.end) is usable RAM in the map and present in guest memory. */
export function isUsableRam(mem: GuestMemory, usable: readonly GuestRange[], r: GuestRange): boolean {
  return (
    r.end > r.start &&
    usable.some((u) => u.start <= r.start && r.end <= u.end) &&
    mem.contains(r.start, r.end - r.start)
  );
}

/** Throws unless `r` is usable RAM (see isUsableRam). */
export function requireUsableRam(mem: GuestMemory, usable: readonly GuestRange[], what: string, r: GuestRange): void {
  if (!isUsableRam(mem, usable, r)) {
    const map = usable.map(formatRange).join(' ') || 'none';
    throw new LinuxBootError(`${what} ${formatRange(r)} is not (wholly) in usable RAM (usable: ${map})`);
  }
}

/** Throws if `r` overlaps any of `taken`, naming the first one hit. */
export function requireFree(what: string, r: GuestRange, taken: readonly NamedRange[]): void {
  const clash = taken.find((t) => rangesOverlap(r, t));
  if (clash) throw new LinuxBootError(`${what} ${formatRange(r)} overlaps ${clash.what} ${formatRange(clash)}`);
}

/**
 * The highest page-aligned [start, start+size) that is usable RAM, ends at or below `ceiling` (exclusive) and below
 * 4 GiB, and overlaps nothing in `taken`. Throws when there is none.
 */
export function placeHighest(
  mem: GuestMemory,
  usable: readonly GuestRange[],
  taken: readonly NamedRange[],
  what: string,
  size: number,
  ceiling: number,
): GuestRange {
  if (!Number.isSafeInteger(size) || size <= 0) throw new LinuxBootError(`${what}: bad size ${size}`);
  const top = Math.min(ceiling, FOUR_GIB);
  const blocked = [...taken].sort((a, b) => a.start - b.start);
  let best: number | null = null;
  for (const u of usable) {
    // Free pieces of [u.start, min(u.end, top)) between the taken ranges.
    let from = u.start;
    const to = Math.min(u.end, top);
    const pieces: GuestRange[] = [];
    for (const t of blocked) {
      if (t.end <= from || t.start >= to) continue;
      if (t.start > from) pieces.push({ start: from, end: t.start });
      from = Math.max(from, t.end);
    }
    if (from < to) pieces.push({ start: from, end: to });
    for (const p of pieces) {
      let start = Math.floor((p.end - size) / PAGE_SIZE) * PAGE_SIZE;
      if (start < p.start) continue;
      if (!mem.contains(start, size)) {
        // The map promises more RAM than is there: find the highest spot whose bytes exist (RAM present in a piece
        // is a prefix of it), by bisecting over pages.
        let lo = Math.ceil(p.start / PAGE_SIZE);
        let hi = start / PAGE_SIZE;
        if (!mem.contains(lo * PAGE_SIZE, size)) continue;
        while (lo < hi) {
          const mid = Math.ceil((lo + hi) / 2);
          if (mem.contains(mid * PAGE_SIZE, size)) lo = mid;
          else hi = mid - 1;
        }
        start = lo * PAGE_SIZE;
      }
      if (best === null || start > best) best = start;
    }
  }
  if (best === null) {
    throw new LinuxBootError(`${what} (${hex(size)} bytes) does not fit in free usable RAM below ${hex(top)}`);
  }
  return { start: best, end: best + size };
}
