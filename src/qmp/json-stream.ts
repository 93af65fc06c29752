// QMP input framing: turns the bytes of a connection into JSON messages, the way QEMU's JSON lexer and streamer do
// (qobject/json-lexer.c, json-streamer.c), so that whatever a QEMU client sends is split the same way here.
//
// - A message is one top-level JSON value. Containers end when their braces/brackets balance; a scalar ends at the
//   first byte that cannot continue it. Messages may span lines, and several may share one line or packet; packet
//   boundaries mean nothing.
// - Strings may use double or single quotes (single quotes are a QEMU extension that hand-written QMP uses).
// - Lexical errors — a control character or 0xFE/0xFF anywhere, a byte that starts no token — produce an error
//   and drop the partial message. As in QEMU, input after the bad byte is skipped up to the next structural
//   character ({ } [ ] : ,) or control character, where lexing restarts. QEMU's documented way for a client to force
//   a resync (send a control character such as 0x1B, or 0xFF) therefore works here too.
// - A message larger than `maxMessageBytes` (counted from its first byte, whitespace inside included) or nested
//   deeper than `maxDepth` produces one error, and input is then dropped up to and including the next newline.
//   Chosen because a raw newline can never be inside a JSON string: after it the stream is between tokens, and
//   every QMP client we know (qemu.qmp, libvirt, socat by hand) ends each message with one. QEMU instead drops the
//   tokens and lexes on, which turns the tail of a huge string into a cascade of errors.
// - Errors inside a token that do not hide where the message ends (bad escape, invalid UTF-8, a malformed number)
//   are kept in the token and reported when the message is parsed; the framing stays exact.
// Memory per connection is bounded by maxMessageBytes.

export type Punct = '{' | '}' | '[' | ']' | ':' | ',';

export type Token =
  | { readonly kind: 'punct'; readonly text: Punct }
  | { readonly kind: 'string'; readonly value: string; readonly error?: undefined }
  | { readonly kind: 'string'; readonly value?: undefined; readonly error: string }
  | { readonly kind: 'number'; readonly text: string }
  | { readonly kind: 'keyword'; readonly text: string };

export type StreamItem =
  | { readonly kind: 'message'; readonly tokens: readonly Token[] }
  /** `desc` is complete, e.g. "JSON parse error, stray '@'". */
  | { readonly kind: 'error'; readonly desc: string };

export interface StreamLimits {
  readonly maxMessageBytes: number;
  readonly maxDepth: number;
}

/** QEMU's own nesting limit (json-streamer.c MAX_NESTING). */
export const DEFAULT_MAX_DEPTH = 1024;

const START = 0;
const STRING = 1;
const NUMBER = 2;
const KEYWORD = 3;
const SKIP_TO_STRUCTURAL = 4; // after a lexical error
const SKIP_TO_NEWLINE = 5; // after a message over a limit

const BACKSLASH = 0x5c;
const NEWLINE = 0x0a;

const isWhitespace = (b: number) => b === 0x20 || b === 0x09 || b === 0x0a || b === 0x0d;
const isDigit = (b: number) => b >= 0x30 && b <= 0x39;
const isLetter = (b: number) => (b >= 0x61 && b <= 0x7a) || (b >= 0x41 && b <= 0x5a);
const isStructural = (b: number) => b === 0x7b || b === 0x7d || b === 0x5b || b === 0x5d || b === 0x3a || b === 0x2c;
/** Bytes that are always a lexical error: control characters outside whitespace, and 0xFE/0xFF (never in UTF-8). */
const isForbidden = (b: number) => (b < 0x20 && !isWhitespace(b)) || b >= 0xfe;
/** Bytes that continue a number token; whether the result is a valid number is the parser's business. */
const continuesNumber = (b: number) => isDigit(b) || b === 0x2e || b === 0x65 || b === 0x45 || b === 0x2b || b === 0x2d;
const continuesKeyword = (b: number) => isLetter(b) || isDigit(b) || b === 0x5f;

function describeByte(b: number): string {
  if (b >= 0x20 && b < 0x7f) return `'${String.fromCharCode(b)}'`;
  return `byte 0x${b.toString(16).padStart(2, '0')}`;
}

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** The value of a string token from its raw bytes between the quotes (escapes not yet processed). */
export function decodeStringBody(raw: Uint8Array): Token {
  let out = '';
  let runStart = 0;
  const flush = (end: number) => {
    if (end > runStart) out += utf8.decode(raw.subarray(runStart, end));
  };
  const hex4 = (at: number): number => {
    if (at + 4 > raw.length) return -1;
    let v = 0;
    for (let k = at; k < at + 4; k++) {
      const c = raw[k];
      const d = isDigit(c) ? c - 0x30 : c >= 0x61 && c <= 0x66 ? c - 0x57 : c >= 0x41 && c <= 0x46 ? c - 0x37 : -1;
      if (d < 0) return -1;
      v = v * 16 + d;
    }
    return v;
  };
  try {
    let i = 0;
    while (i < raw.length) {
      if (raw[i] !== BACKSLASH) {
        i++;
        continue;
      }
      flush(i);
      const esc = raw[i + 1];
      switch (esc) {
        case 0x22:
          out += '"';
          i += 2;
          break;
        case 0x27:
          out += "'";
          i += 2;
          break;
        case 0x5c:
          out += '\\';
          i += 2;
          break;
        case 0x2f:
          out += '/';
          i += 2;
          break;
        case 0x62:
          out += '\b';
          i += 2;
          break;
        case 0x66:
          out += '\f';
          i += 2;
          break;
        case 0x6e:
          out += '\n';
          i += 2;
          break;
        case 0x72:
          out += '\r';
          i += 2;
          break;
        case 0x74:
          out += '\t';
          i += 2;
          break;
        case 0x75: {
          // \uXXXX, surrogates must come in pairs
          const cu = hex4(i + 2);
          if (cu < 0) return { kind: 'string', error: 'invalid hex escape sequence in string' };
          const shown = `\\u${cu.toString(16).padStart(4, '0')}`;
          if (cu >= 0xdc00 && cu <= 0xdfff)
            return { kind: 'string', error: `${shown} is not a valid Unicode character` };
          if (cu >= 0xd800 && cu <= 0xdbff) {
            const low = raw[i + 6] === BACKSLASH && raw[i + 7] === 0x75 ? hex4(i + 8) : -1;
            if (low < 0xdc00 || low > 0xdfff)
              return { kind: 'string', error: `${shown} is not a valid Unicode character` };
            out += String.fromCharCode(cu, low);
            i += 12;
          } else {
            out += String.fromCharCode(cu);
            i += 6;
          }
          break;
        }
        default:
          return { kind: 'string', error: 'invalid escape sequence in string' };
      }
      runStart = i;
    }
    flush(raw.length);
  } catch {
    return { kind: 'string', error: 'invalid UTF-8 sequence in string' };
  }
  return { kind: 'string', value: out };
}

/** Incremental splitter: feed it chunks as they arrive, get complete messages and errors back in input order. */
export class JsonStreamer {
  private state = START;
  private tokens: Token[] = [];
  private depth = 0;
  private messageBytes = 0;
  /** Bytes of the token in progress that arrived in earlier chunks. */
  private parts: Uint8Array[] = [];
  private quote = 0;
  private escaped = false;

  constructor(private readonly limits: StreamLimits) {}

  /** True while a message is partly received (for logging a truncated message at EOF). */
  get pending(): boolean {
    return this.tokens.length > 0 || this.state === STRING || this.state === NUMBER || this.state === KEYWORD;
  }

  push(chunk: Uint8Array): StreamItem[] {
    const out: StreamItem[] = [];
    let segStart = 0; // where the token in progress starts in this chunk
    for (let i = 0; i < chunk.length; i++) {
      const b = chunk[i];
      if (this.state === SKIP_TO_NEWLINE) {
        if (b === NEWLINE) this.state = START;
        continue;
      }
      if (this.state === SKIP_TO_STRUCTURAL) {
        if (isStructural(b))
          this.state = START; // reprocessed below as the start of a token
        else {
          if (b < 0x20 || b >= 0xfe) this.state = START; // consumed: whitespace, or QEMU's "reset" bytes
          continue;
        }
      }
      if (this.pending && ++this.messageBytes > this.limits.maxMessageBytes) {
        out.push({
          kind: 'error',
          desc: `JSON parse error, message larger than ${this.limits.maxMessageBytes} bytes; input dropped up to the next newline`,
        });
        this.reset();
        this.state = b === NEWLINE ? START : SKIP_TO_NEWLINE;
        continue;
      }
      switch (this.state) {
        case STRING:
          if (b < 0x20 || b >= 0xfe) {
            out.push({ kind: 'error', desc: `JSON parse error, ${describeByte(b)} inside a string` });
            this.reset();
            // A raw newline ends the bad line; otherwise skip the rest of the string, as QEMU does.
            this.state = b === NEWLINE ? START : SKIP_TO_STRUCTURAL;
          } else if (this.escaped) {
            this.escaped = false;
          } else if (b === BACKSLASH) {
            this.escaped = true;
          } else if (b === this.quote) {
            this.parts.push(chunk.subarray(segStart, i));
            const body = this.parts.length === 1 ? this.parts[0] : Buffer.concat(this.parts);
            this.parts = [];
            this.state = START;
            this.token(decodeStringBody(body), out);
          }
          continue;
        case NUMBER:
        case KEYWORD: {
          const goesOn = this.state === NUMBER ? continuesNumber(b) : continuesKeyword(b);
          if (goesOn) continue;
          this.parts.push(chunk.subarray(segStart, i));
          const text = Buffer.concat(this.parts).toString('latin1');
          this.parts = [];
          const kind = this.state === NUMBER ? 'number' : 'keyword';
          this.state = START;
          this.token({ kind, text }, out);
          break; // this byte starts something new: fall through to START below
        }
      }
      // START
      if (isWhitespace(b)) continue;
      if (!this.pending) this.messageBytes = 1;
      if (isStructural(b)) {
        this.token({ kind: 'punct', text: String.fromCharCode(b) as Punct }, out);
      } else if (b === 0x22 || b === 0x27) {
        this.state = STRING;
        this.quote = b;
        this.escaped = false;
        segStart = i + 1;
      } else if (b === 0x2d || isDigit(b)) {
        this.state = NUMBER;
        segStart = i;
      } else if (isLetter(b)) {
        this.state = KEYWORD;
        segStart = i;
      } else {
        out.push({ kind: 'error', desc: `JSON parse error, stray ${describeByte(b)}` });
        this.reset();
        this.state = isForbidden(b) ? START : SKIP_TO_STRUCTURAL;
      }
    }
    if (this.state === STRING || this.state === NUMBER || this.state === KEYWORD) {
      // Keep the unfinished token's bytes; copy them, the caller may reuse its buffer.
      if (segStart < chunk.length) this.parts.push(chunk.slice(segStart));
    }
    return out;
  }

  private token(token: Token, out: StreamItem[]): void {
    this.tokens.push(token);
    if (token.kind === 'punct') {
      if (token.text === '{' || token.text === '[') this.depth++;
      else if (token.text === '}' || token.text === ']') this.depth--;
    }
    if (this.depth > this.limits.maxDepth) {
      out.push({
        kind: 'error',
        desc: `JSON parse error, nesting deeper than ${this.limits.maxDepth}; input dropped up to the next newline`,
      });
      this.reset();
      this.state = SKIP_TO_NEWLINE;
      return;
    }
    if (this.depth <= 0) {
      // Balanced (or a stray closer, which the parser reports): one complete message.
      out.push({ kind: 'message', tokens: this.tokens });
      this.tokens = [];
      this.depth = 0;
      this.messageBytes = 0;
    }
  }

  private reset(): void {
    this.tokens = [];
    this.parts = [];
    this.depth = 0;
    this.messageBytes = 0;
    this.escaped = false;
  }
}
