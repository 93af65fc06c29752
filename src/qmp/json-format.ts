// JSON output the way QEMU writes it on a QMP socket, so a transcript from tsvmm looks like one from QEMU:
// `{"return": {}, "id": 1}` — a space after every ':' and ',', members in insertion order, and pure ASCII (every
// character outside printable ASCII is a \uXXXX escape with upper-case hex, astral characters as surrogate pairs).
// The caller terminates each message with "\r\n" (QEMU's monitor turns '\n' into "\r\n").
//
// Values: objects (own enumerable string keys; `undefined` members are left out, which is how optional members are
// absent), arrays, strings, booleans, null, finite numbers and bigints (uint64 values such as QEMU's default
// max-bandwidth 18446744073709551615 do not fit in a double). Anything else is a programming error and throws.

const HEX = '0123456789ABCDEF';

function hex4(code: number): string {
  return HEX[(code >> 12) & 15] + HEX[(code >> 8) & 15] + HEX[(code >> 4) & 15] + HEX[code & 15];
}

/** A JSON string literal in QEMU's style: ASCII only. */
export function quoteJsonString(s: string): string {
  let out = '"';
  let runStart = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0x20 && c < 0x7f && c !== 0x22 && c !== 0x5c) continue; // printable ASCII other than " and \
    out += s.slice(runStart, i);
    runStart = i + 1;
    switch (c) {
      case 0x22:
        out += '\\"';
        break;
      case 0x5c:
        out += '\\\\';
        break;
      case 0x08:
        out += '\\b';
        break;
      case 0x0c:
        out += '\\f';
        break;
      case 0x0a:
        out += '\\n';
        break;
      case 0x0d:
        out += '\\r';
        break;
      case 0x09:
        out += '\\t';
        break;
      default:
        out += `\\u${hex4(c)}`; // a UTF-16 unit: surrogate pairs come out as two escapes, as in QEMU
    }
  }
  return `${out + s.slice(runStart)}"`;
}

function formatNumber(n: number): string {
  if (!Number.isFinite(n)) throw new TypeError(`cannot send ${n} over QMP (JSON has no such number)`);
  return Object.is(n, -0) ? '0' : String(n);
}

/** One QMP message as text, without the line terminator. Throws TypeError on a value JSON cannot carry. */
export function formatQmpJson(value: unknown): string {
  const seen = new Set<object>();
  const walk = (v: unknown): string => {
    switch (typeof v) {
      case 'string':
        return quoteJsonString(v);
      case 'number':
        return formatNumber(v);
      case 'bigint':
        return v.toString();
      case 'boolean':
        return v ? 'true' : 'false';
      case 'object': {
        if (v === null) return 'null';
        if (seen.has(v)) throw new TypeError('cannot send a cyclic structure over QMP');
        seen.add(v);
        let out: string;
        if (Array.isArray(v)) {
          out = `[${v.map((item) => (item === undefined ? 'null' : walk(item))).join(', ')}]`;
        } else {
          const parts: string[] = [];
          for (const key of Object.keys(v)) {
            const member = (v as Record<string, unknown>)[key];
            if (member === undefined) continue;
            parts.push(`${quoteJsonString(key)}: ${walk(member)}`);
          }
          out = `{${parts.join(', ')}}`;
        }
        seen.delete(v);
        return out;
      }
      default:
        throw new TypeError(`cannot send a ${typeof v} over QMP`);
    }
  };
  return walk(value);
}
