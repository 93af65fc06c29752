import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { JsonStreamer, type StreamItem } from './json-stream.js';
import { parseMessage } from './json-parse.js';
import { formatQmpJson, quoteJsonString } from './json-format.js';

const limits = { maxMessageBytes: 1024, maxDepth: 8 };
const bytes = (s: string) => Buffer.from(s, 'latin1');

/** Feeds `chunks` and returns each message parsed (or its error) in order. */
function frame(chunks: Array<string | Uint8Array>, streamer = new JsonStreamer(limits)): Array<unknown> {
  const out: unknown[] = [];
  for (const chunk of chunks) {
    for (const item of streamer.push(typeof chunk === 'string' ? bytes(chunk) : chunk)) out.push(describe(item));
  }
  return out;
}

function describe(item: StreamItem): unknown {
  if (item.kind === 'error') return { lexError: item.desc };
  const parsed = parseMessage(item.tokens);
  return parsed.ok ? parsed.value : { parseError: parsed.error };
}

test('json framing: one message split byte by byte arrives once, whole', () => {
  const text = '{"execute": "query-status", "id": "a\\"b{"}';
  assert.equal(frame([...text].map((c) => c)), [{ execute: 'query-status', id: 'a"b{' }]);
});

test('json framing: several messages in one packet come out in order, with or without separators', () => {
  assert.equal(frame(['{"a":1}{"b":2}\n{"c":3}\r\n[4] "s" 5 true\n']), [
    { a: 1 },
    { b: 2 },
    { c: 3 },
    [4],
    's',
    5,
    true,
  ]);
});

test('json framing: a message may span lines, as QEMU allows', () => {
  assert.equal(frame(['{\n  "execute":\n', '  "stop"\n}\n']), [{ execute: 'stop' }]);
});

test('json framing: braces inside strings, escaped quotes and single-quoted strings do not confuse the framer', () => {
  assert.equal(frame([`{'k': 'it''s' }`]).length, 1); // a parse error, but one message
  assert.equal(frame([`{"k": "}]\\\\", 'q': '"}\\''}`]), [{ k: '}]\\', q: `"}'` }]);
});

test('json framing: a scalar at the top level ends at the first byte that cannot continue it', () => {
  assert.equal(frame(['12']), []);
  assert.equal(frame(['12', '3 ']), [123]);
});

test('json framing: a stray closer is a message of its own and parses as an error', () => {
  assert.equal(frame(['}{"a":1}']), [{ parseError: 'expecting value' }, { a: 1 }]);
});

test('json framing: a control character in a string is a lexical error and lexing restarts at the next structural character', () => {
  assert.equal(frame(['{"execute": "a\x01b"}{"x":1}\n']), [
    { lexError: 'JSON parse error, byte 0x01 inside a string' },
    { parseError: 'expecting value' }, // the '}' that closed the broken message, as in QEMU
    { x: 1 },
  ]);
});

test('json framing: a raw newline inside a string ends the broken message there', () => {
  assert.equal(frame(['{"execute": "oops\n{"ok": true}\n']), [
    { lexError: 'JSON parse error, byte 0x0a inside a string' },
    { ok: true },
  ]);
});

test("json framing: 0xFF (QEMU's documented reset byte) discards a partial message", () => {
  assert.equal(frame(['{"execute": ', new Uint8Array([0xff]), '{"a":1}']), [
    { lexError: 'JSON parse error, stray byte 0xff' },
    { a: 1 },
  ]);
});

test('json framing: a stray byte is reported and lexing resumes at the next structural character', () => {
  assert.equal(frame(['@@@ {"a":1}\n']), [{ lexError: "JSON parse error, stray '@'" }, { a: 1 }]);
});

test('json framing: a message over the size limit is one error and input is dropped up to the next newline', () => {
  const streamer = new JsonStreamer(limits);
  const big = `{"execute": "x", "id": "${'a'.repeat(2000)}"}`;
  const out = frame([big.slice(0, 700), big.slice(700), ' {"lost": 1}\n{"kept": 1}\n'], streamer);
  assert.equal(out, [
    { lexError: 'JSON parse error, message larger than 1024 bytes; input dropped up to the next newline' },
    { kept: 1 },
  ]);
});

test('json framing: a message exactly at the size limit is accepted', () => {
  const body = `{"s": "${'b'.repeat(1024 - 9)}"}`;
  assert.is(body.length, 1024);
  assert.equal(frame([body]), [{ s: 'b'.repeat(1015) }]);
});

test('json framing: nesting deeper than the limit is an error, then input resumes after the newline', () => {
  assert.equal(frame(['[[[[[[[[[[1]]]]]]]]]]\n{"a":1}']), [
    { lexError: 'JSON parse error, nesting deeper than 8; input dropped up to the next newline' },
    { a: 1 },
  ]);
});

test('json framing: memory stays bounded while a huge message is being dropped', () => {
  const streamer = new JsonStreamer(limits);
  const chunk = bytes('x'.repeat(64 * 1024));
  const out = frame(['{"s": "', chunk, chunk, chunk], streamer);
  assert.is(out.length, 1);
  assert.is(streamer.pending, false);
});

test("json parse: QEMU's messages for malformed objects", () => {
  const one = (s: string) => frame([`${s}\n`])[0];
  assert.equal(one('{"execute" "x"}'), { parseError: 'missing : in object pair' });
  assert.equal(one('{"execute": foo}'), { parseError: "invalid keyword 'foo'" });
  assert.equal(one('{1: 2}'), { parseError: 'key is not a string in object' });
  assert.equal(one('{"a": 1, "a": 2}'), { parseError: 'duplicate key' });
  assert.equal(one('[1 2]'), { parseError: 'expected separator in list, got 2' });
  assert.equal(one('{"a": 1 "b": 2}'), { parseError: 'expected separator in dict, got string' });
  assert.equal(one('{"a": 01}'), { parseError: "invalid number '01'" });
  assert.equal(one('{"a": 1e400}'), { parseError: "number '1e400' is out of range" });
  assert.equal(one('{"a": [1,]}'), { parseError: 'expecting value' });
});

test('json parse: strings: escapes, surrogate pairs, and invalid UTF-8 or lone surrogates refused', () => {
  const one = (s: string | Uint8Array) => frame([s, '\n'])[0];
  assert.equal(one('"\\u00e9\\n\\t\\/\\ud83d\\ude00"'), '\u00e9\n\t/\u{1f600}');
  assert.equal(one(Buffer.from('"caf\u00e9 \u{1f600}"', 'utf8')), 'caf\u00e9 \u{1f600}');
  assert.equal(one(new Uint8Array([0x22, 0xc3, 0x28, 0x22])), { parseError: 'invalid UTF-8 sequence in string' });
  assert.equal(one(new Uint8Array([0x22, 0xed, 0xa0, 0x80, 0x22])), { parseError: 'invalid UTF-8 sequence in string' }); // CESU surrogate
  assert.equal(one(new Uint8Array([0x22, 0xc0, 0xaf, 0x22])), { parseError: 'invalid UTF-8 sequence in string' }); // overlong '/'
  assert.equal(one('"\\ud800"'), { parseError: '\\ud800 is not a valid Unicode character' });
  assert.equal(one('"\\udc00x"'), { parseError: '\\udc00 is not a valid Unicode character' });
  assert.equal(one('"\\x"'), { parseError: 'invalid escape sequence in string' });
  assert.equal(one('"\\u12"'), { parseError: 'invalid hex escape sequence in string' });
});

test('json parse: integers stay exact up to uint64; other numbers are doubles', () => {
  const one = (s: string) => frame([`${s} `])[0];
  assert.is(one('9007199254740991'), 9007199254740991);
  assert.is(one('18446744073709551615'), 18446744073709551615n);
  assert.is(one('-9223372036854775808'), -9223372036854775808n);
  assert.is(one('18446744073709551616'), 2 ** 64); // beyond uint64: a double, as in QEMU
  assert.is(one('-0'), 0);
  assert.is(one('2.5e3'), 2500);
});

test('json parse: "__proto__" is an ordinary member', () => {
  const v = frame(['{"__proto__": {"x": 1}}'])[0] as Record<string, unknown>;
  assert.ok(Object.hasOwn(v, '__proto__'));
  assert.is(Object.getPrototypeOf(v), Object.prototype);
  assert.is(formatQmpJson(v), '{"__proto__": {"x": 1}}');
});

test("json format: QEMU's spacing and ASCII-only escapes", () => {
  assert.is(formatQmpJson({ return: {}, id: [1, 'a', null, true] }), '{"return": {}, "id": [1, "a", null, true]}');
  assert.is(quoteJsonString('é\u{1f600}"\\\n\x01\x7f'), '"\\u00E9\\uD83D\\uDE00\\"\\\\\\n\\u0001\\u007F"');
  assert.is(
    formatQmpJson({ a: undefined, b: 18446744073709551615n, c: -0, d: 0.5 }),
    '{"b": 18446744073709551615, "c": 0, "d": 0.5}',
  );
});

test('json format: values JSON cannot carry are refused', () => {
  assert.throws(() => formatQmpJson({ x: NaN }), /NaN/);
  assert.throws(() => formatQmpJson({ f: () => 1 }), /function/);
  const cyclic: Record<string, unknown> = {};
  cyclic.self = cyclic;
  assert.throws(() => formatQmpJson(cyclic), /cyclic/);
});

test('json round trip: what the parser reads, the formatter writes back equivalently', () => {
  const samples = [
    '{"a": [1, 2.5, "x\\u00E9", {"b": null}], "c": false}',
    '[]',
    '{}',
    '"\\uD83D\\uDE00"',
    '18446744073709551615',
  ];
  for (const s of samples) {
    const v = frame([`${s} `])[0];
    assert.is(formatQmpJson(v), s);
  }
});

test.run();
