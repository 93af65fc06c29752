// QEMU's option syntax: `-object memory-backend-file,id=ram0,size=512M,mem-path=/dev/shm/vm0,share=on`.
//
// The rules follow QEMU's QemuOpts parser (util/qemu-option.c), so a command line written for QEMU means the same
// here:
// - items are separated by `,`; a doubled `,,` is a literal comma inside a key or value (`path=/a,,b` → `/a,b`);
// - `key=value` splits at the first `=` (a value may contain `=`);
// - a bare `key` means `key=on`;
// - if the option has an implied key (`-object` → the backend type, `-m` → `size`, `-machine` → `type`, `-device`
//   → `driver`), a first item without `=` is that key's value;
// - a trailing `,` is ignored; an empty item elsewhere is an error.
// Every error is one line that names the option and the offending text.
import { GiB, KiB, MiB, TiB } from './sizes.js';

/** One line naming the option and what was wrong with it: `-m: '12Q' is not a valid size …`. */
export class QemuOptsError extends Error {
  constructor(
    readonly option: string,
    detail: string,
  ) {
    super(`${option}: ${detail}`);
    this.name = 'QemuOptsError';
  }
}

/** QEMU's size suffixes (case-insensitive), each a power of 1024. */
const SIZE_SUFFIX: Record<string, number> = {
  B: 1,
  K: KiB,
  M: MiB,
  G: GiB,
  T: TiB,
  P: 1024 * TiB,
  E: 1024 * 1024 * TiB,
};

const SIZE_SYNTAX = /^(?:(0[xX][0-9a-fA-F]+)|(\d+)(?:\.(\d+))?([bBkKmMgGtTpPeE])?)$/;

/**
 * A size the way QEMU reads it: `4096`, `512M`, `1G`, `2T`, `1.5G`, `0x1000`. Suffixes B/K/M/G/T/P/E are powers of
 * 1024. A plain number is in `defaultUnit` (bytes for `size=`, MiB for `-m`). A fraction needs a unit larger than a
 * byte and is truncated to whole bytes (QEMU does the same). Hex takes no suffix or fraction. The result must be a
 * safe integer (< 2^53). Throws a plain Error with the reason; callers wrap it with the option name.
 */
export function parseSize(text: string, defaultUnit = 1): number {
  const m = SIZE_SYNTAX.exec(text);
  if (!m)
    throw new Error(
      `'${text}' is not a valid size (use a number with an optional suffix B, K, M, G, T, P or E, e.g. 512M or 1.5G)`,
    );
  let bytes: number;
  if (m[1] !== undefined) {
    bytes = Number.parseInt(m[1].slice(2), 16);
  } else {
    const unit = m[4] === undefined ? defaultUnit : SIZE_SUFFIX[m[4].toUpperCase()];
    const whole = Number(m[2]);
    const fraction = m[3] === undefined ? 0 : Number(`0.${m[3]}`);
    if (fraction !== 0 && unit === 1)
      throw new Error(`'${text}' has a fraction but no unit larger than a byte (write e.g. 1.5G)`);
    bytes = whole * unit + Math.floor(fraction * unit);
  }
  if (!Number.isSafeInteger(bytes)) throw new Error(`'${text}' is too large (the limit is 2^53 - 1 bytes)`);
  return bytes;
}

/** A byte count for messages, in the largest binary unit that divides it exactly: 2^30 → "1 GiB", 1536 → "1536 bytes". */
export function formatSize(bytes: number): string {
  const units: Array<[string, number]> = [
    ['TiB', TiB],
    ['GiB', GiB],
    ['MiB', MiB],
    ['KiB', KiB],
  ];
  for (const [name, unit] of units) {
    if (bytes >= unit && bytes % unit === 0) return `${bytes / unit} ${name}`;
  }
  return `${bytes} bytes`;
}

const TRUE_WORDS = new Set(['on', 'yes', 'true']);
const FALSE_WORDS = new Set(['off', 'no', 'false']);

/** QEMU's booleans: on/yes/true and off/no/false. Throws a plain Error naming the word otherwise. */
export function parseBool(text: string): boolean {
  if (TRUE_WORDS.has(text)) return true;
  if (FALSE_WORDS.has(text)) return false;
  throw new Error(`'${text}' is not a boolean (use on/off, yes/no or true/false)`);
}

export interface ParseOptions {
  /** The flag as the user typed it, for messages: `-object`, `-m`. */
  option: string;
  /** The key a leading item without `=` belongs to: `qom-type` for -object, `size` for -m, `type` for -machine. */
  impliedKey?: string;
}

/** A parsed option value: the items in order, with typed getters whose errors name the option, key and value. */
export class QemuOpts {
  private readonly values = new Map<string, string>();

  constructor(
    readonly option: string,
    entries: Iterable<[string, string]>,
    readonly impliedKey?: string,
  ) {
    for (const [key, value] of entries) {
      if (this.values.has(key)) throw new QemuOptsError(option, `parameter '${key}' is given more than once`);
      this.values.set(key, value);
    }
  }

  /** The value of the implied key (the type in `-object memory-backend-file,…`), if one was given. */
  get implied(): string | undefined {
    return this.impliedKey === undefined ? undefined : this.values.get(this.impliedKey);
  }

  /** A prefix for messages: the option and, when known, the type it creates (`-object memory-backend-file`). */
  get label(): string {
    const implied = this.implied;
    return implied !== undefined && this.impliedKey !== 'size' ? `${this.option} ${implied}` : this.option;
  }

  has(key: string): boolean {
    return this.values.has(key);
  }

  keys(): string[] {
    return [...this.values.keys()];
  }

  entries(): Array<[string, string]> {
    return [...this.values.entries()];
  }

  get(key: string): string | undefined {
    return this.values.get(key);
  }

  /** A string parameter; `fallback` when absent, and an error naming the key when absent without one. */
  string(key: string, fallback?: string): string {
    const v = this.values.get(key);
    if (v !== undefined) return v;
    if (fallback !== undefined) return fallback;
    throw new QemuOptsError(this.label, `parameter '${key}' is missing`);
  }

  bool(key: string, fallback: boolean): boolean {
    const v = this.values.get(key);
    if (v === undefined) return fallback;
    try {
      return parseBool(v);
    } catch (e) {
      throw new QemuOptsError(this.label, `${key}=${v}: ${(e as Error).message}`);
    }
  }

  /** A size (see parseSize): `defaultUnit` is what a plain number means (bytes unless told). */
  size(key: string, fallback?: number, defaultUnit = 1): number {
    const v = this.values.get(key);
    if (v === undefined) {
      if (fallback !== undefined) return fallback;
      throw new QemuOptsError(this.label, `parameter '${key}' is missing`);
    }
    try {
      return parseSize(v, defaultUnit);
    } catch (e) {
      throw new QemuOptsError(this.label, `${key}=${v}: ${(e as Error).message}`);
    }
  }

  /** A non-negative decimal or 0x-hex integer. */
  uint(key: string, fallback?: number): number {
    const v = this.values.get(key);
    if (v === undefined) {
      if (fallback !== undefined) return fallback;
      throw new QemuOptsError(this.label, `parameter '${key}' is missing`);
    }
    const n = /^(\d+|0[xX][0-9a-fA-F]+)$/.test(v) ? Number(v) : NaN;
    if (!Number.isSafeInteger(n)) throw new QemuOptsError(this.label, `${key}=${v}: not a non-negative integer`);
    return n;
  }

  /** Refuses any key outside `known` (the implied key is always allowed), naming the first stranger and listing `known`. */
  checkKnown(known: Iterable<string>): void {
    const listed = [...new Set(known)].sort();
    const allowed = new Set(listed);
    if (this.impliedKey !== undefined) allowed.add(this.impliedKey);
    for (const key of this.values.keys()) {
      if (!allowed.has(key)) {
        throw new QemuOptsError(this.label, `unknown parameter '${key}' (known: ${listed.join(', ')})`);
      }
    }
  }
}

/** Splits `text` into items at single commas, turning `,,` into a literal comma. */
function splitItems(text: string): Array<{ text: string; raw: string }> {
  const items: Array<{ text: string; raw: string }> = [];
  let current = '';
  let raw = '';
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (ch === ',') {
      if (text[i + 1] === ',') {
        current += ',';
        raw += ',,';
        i++;
        continue;
      }
      items.push({ text: current, raw });
      current = '';
      raw = '';
      continue;
    }
    current += ch;
    raw += ch;
  }
  // A trailing comma ends the list without adding an empty item, as in QEMU.
  if (raw !== '' || !text.endsWith(',')) items.push({ text: current, raw });
  return items;
}

/**
 * Parses one option value: `parseQemuOpts('memory-backend-file,id=ram0,share=on', { option: '-object',
 * impliedKey: 'qom-type' })`. Returns a QemuOpts; throws a QemuOptsError naming the option and the bad item.
 */
export function parseQemuOpts(text: string, options: ParseOptions): QemuOpts {
  const { option, impliedKey } = options;
  if (text === '') throw new QemuOptsError(option, 'empty value');
  const items = splitItems(text);
  const entries: Array<[string, string]> = [];
  items.forEach((item, index) => {
    if (item.raw === '') throw new QemuOptsError(option, `empty parameter in '${text}'`);
    // The split is on the first '=' of the unescaped text; `,,` never produces '='.
    const eq = item.text.indexOf('=');
    if (eq < 0) {
      if (index === 0 && impliedKey !== undefined) {
        entries.push([impliedKey, item.text]);
      } else {
        entries.push([item.text, 'on']); // a bare `key` is `key=on`
      }
      return;
    }
    const key = item.text.slice(0, eq);
    if (key === '') throw new QemuOptsError(option, `parameter without a name in '${item.raw}'`);
    entries.push([key, item.text.slice(eq + 1)]);
  });
  return new QemuOpts(option, entries, impliedKey);
}
