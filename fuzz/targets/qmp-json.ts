// QMP input as a client sends it: bytes in chunks of any size through the framer (src/qmp/json-stream.ts), each
// framed message through the parser (json-parse.ts) and, for a request naming a known command, its arguments
// through the schema check (qapi.ts) as the server's dispatch does. The framer and parser never throw (they report
// errors as values); the schema check refuses only with a QmpError. A parsed value also survives the trip back:
// formatting it (json-format.ts) and parsing that again gives the same text.
import { QmpError } from '../../src/qmp/errors.js';
import { formatQmpJson } from '../../src/qmp/json-format.js';
import { parseMessage } from '../../src/qmp/json-parse.js';
import { DEFAULT_MAX_DEPTH, JsonStreamer } from '../../src/qmp/json-stream.js';
import { isPlainObject, type Members, validateArguments } from '../../src/qmp/qapi.js';
import { QMP_COMMANDS } from '../../src/qmp/schema.js';
import { ByteScript } from '../support/bytes.js';
import { invariant, refusedOnlyWith } from '../support/contract.js';

export const instrumented = ['src/qmp/json-', 'src/qmp/qapi.js'];

/** Small limits, so the fuzzer reaches the over-the-limit paths with small inputs. */
const LIMITS = { maxMessageBytes: 4096, maxDepth: 32 };

function parseAll(bytes: Uint8Array, chunk: number, limits = LIMITS): unknown[] {
  const streamer = new JsonStreamer(limits);
  const values: unknown[] = [];
  for (let at = 0; at < bytes.length; at += chunk) {
    for (const item of streamer.push(bytes.subarray(at, at + chunk))) {
      if (item.kind !== 'message') continue;
      const parsed = parseMessage(item.tokens);
      if (parsed.ok) values.push(parsed.value);
    }
  }
  return values;
}

export function fuzz(data: Uint8Array): void {
  const script = new ByteScript(data);
  const chunk = 1 + (script.u8() % 64);
  for (const value of parseAll(script.rest(), chunk)) {
    const text = formatQmpJson(value);
    const again = parseAll(new TextEncoder().encode(`${text}\n`), 4096, {
      maxMessageBytes: 1 << 20,
      maxDepth: DEFAULT_MAX_DEPTH,
    });
    invariant(again.length === 1 && formatQmpJson(again[0]) === text, `round trip of ${text.slice(0, 200)}`);
    if (!isPlainObject(value) || typeof value.execute !== 'string' || !Object.hasOwn(QMP_COMMANDS, value.execute))
      continue;
    const schema = QMP_COMMANDS[value.execute as keyof typeof QMP_COMMANDS] as { args?: Members };
    const args = value.arguments ?? {};
    if (!isPlainObject(args)) continue;
    refusedOnlyWith([QmpError], () => validateArguments(schema.args ?? {}, args));
  }
}

const text = (s: string) => new TextEncoder().encode(s);
export const seeds = (): Uint8Array[] => [
  text('\x07{"execute":"qmp_capabilities"}\n{"execute":"query-status","id":1}\n'),
  text(
    '\x10{"execute":"migrate","arguments":{"channels":[{"channel-type":"main","addr":{"transport":"file","filename":"/tmp/x","offset":0}}]}}',
  ),
  text(
    '\x03{"execute":"migrate-set-parameters","arguments":{"mode":"cpr-transfer","max-bandwidth":18446744073709551615}}',
  ),
  text('\x40{"execute":"pmemsave","arguments":{"val":4096,"size":1e3,"filename":"m\\u00e9m\\ud83d\\ude00"}}'),
  text(
    '\x01[1, -0.5e-3, true, false, null, "\\n\\t\\"", {"a":[[]]}]\n{"execute":"cpr-save","arguments":{"filename":"f","mode":"cpr-reboot"}}',
  ),
  text(
    "\x05{'execute': 'migrate-set-capabilities', 'arguments': {'capabilities': [{'capability': 'x-ignore-shared', 'state': true}]}}",
  ),
];
