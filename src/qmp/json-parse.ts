// Tokens of one framed message (json-stream.ts) → a JavaScript value, with QEMU's parser rules and error wording
// (qobject/json-parser.c) where a client might see them.
//
// Numbers: an integer literal becomes a number when it is a safe integer, a bigint when it is not but fits int64 or
// uint64 (QEMU keeps those exact too: 18446744073709551615 round-trips), and a double otherwise. A literal with a
// fraction or exponent is a double. (QEMU also refuses `1.0` for an integer parameter; here `1.0` reads as 1.)
// Objects are ordinary objects whose members are set with defineProperty, so a key such as "__proto__" is just
// data. Duplicate keys are an error, as in QEMU.

import type { Token } from './json-stream.js';

export type ParseResult = { ok: true; value: unknown } | { ok: false; error: string };

const INTEGER = /^-?(?:0|[1-9][0-9]*)$/;
const DECIMAL = /^-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?$/;
const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);
const INT64_MIN = -(1n << 63n);
const UINT64_MAX = (1n << 64n) - 1n;

class ParseError extends Error {}

function numberValue(text: string): number | bigint {
  if (INTEGER.test(text)) {
    const big = BigInt(text);
    if (big >= -MAX_SAFE && big <= MAX_SAFE) return Number(big);
    if (big >= INT64_MIN && big <= UINT64_MAX) return big;
  } else if (!DECIMAL.test(text)) {
    throw new ParseError(`invalid number '${text}'`);
  }
  const n = Number(text);
  if (!Number.isFinite(n)) throw new ParseError(`number '${text}' is out of range`);
  return n;
}

function tokenText(t: Token): string {
  switch (t.kind) {
    case 'punct':
      return t.text;
    case 'number':
    case 'keyword':
      return t.text;
    case 'string':
      return 'string';
  }
}

/** Parses one message. Error strings are without the "JSON parse error, " prefix. */
export function parseMessage(tokens: readonly Token[]): ParseResult {
  let pos = 0;
  const peek = (): Token | undefined => tokens[pos];

  const value = (): unknown => {
    const t = tokens[pos++];
    if (t === undefined) throw new ParseError('expecting value');
    switch (t.kind) {
      case 'string':
        if (t.error !== undefined) throw new ParseError(t.error);
        return t.value;
      case 'number':
        return numberValue(t.text);
      case 'keyword':
        if (t.text === 'true') return true;
        if (t.text === 'false') return false;
        if (t.text === 'null') return null;
        throw new ParseError(`invalid keyword '${t.text}'`);
      case 'punct':
        if (t.text === '{') return object();
        if (t.text === '[') return array();
        throw new ParseError('expecting value');
    }
  };

  const object = (): Record<string, unknown> => {
    const out: Record<string, unknown> = {};
    const seen = new Set<string>();
    const first = peek();
    if (first?.kind === 'punct' && first.text === '}') {
      pos++;
      return out;
    }
    for (;;) {
      const key = tokens[pos++];
      if (key === undefined) throw new ParseError('premature end of input in object');
      if (key.kind !== 'string') throw new ParseError('key is not a string in object');
      if (key.error !== undefined) throw new ParseError(key.error);
      const colon = tokens[pos++];
      if (colon?.kind !== 'punct' || colon.text !== ':') throw new ParseError('missing : in object pair');
      const member = value();
      if (seen.has(key.value)) throw new ParseError('duplicate key');
      seen.add(key.value);
      Object.defineProperty(out, key.value, { value: member, enumerable: true, writable: true, configurable: true });
      const sep = tokens[pos++];
      if (sep?.kind === 'punct' && sep.text === '}') return out;
      if (sep?.kind !== 'punct' || sep.text !== ',')
        throw new ParseError(`expected separator in dict${sep ? `, got ${tokenText(sep)}` : ''}`);
    }
  };

  const array = (): unknown[] => {
    const out: unknown[] = [];
    const first = peek();
    if (first?.kind === 'punct' && first.text === ']') {
      pos++;
      return out;
    }
    for (;;) {
      out.push(value());
      const sep = tokens[pos++];
      if (sep?.kind === 'punct' && sep.text === ']') return out;
      if (sep?.kind !== 'punct' || sep.text !== ',')
        throw new ParseError(`expected separator in list${sep ? `, got ${tokenText(sep)}` : ''}`);
    }
  };

  try {
    const result = value();
    if (pos !== tokens.length) throw new ParseError(`unexpected ${tokenText(tokens[pos])} after the value`);
    return { ok: true, value: result };
  } catch (e) {
    if (e instanceof ParseError) return { ok: false, error: e.message };
    throw e;
  }
}
