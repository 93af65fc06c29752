// The `-qmp` option, QEMU's spelling: `-qmp unix:PATH,server,wait=off` (also `server=on`, and the legacy `nowait`).
// Parsed with the CLI's QemuOpts rules (`,,` is a literal comma in the path). As in QEMU, a server socket makes the
// VM wait for its first client unless `wait=off`. Only a listening unix socket is supported: tcp:, stdio and client
// mode (no `server`) are refused with a message that says what to write instead.

import { parseQemuOpts, parseBool, QemuOptsError, type QemuOpts } from '../util/qemu-opts.js';
import { SetupError } from '../util/setup-error.js';

export interface QmpSpec {
  /** The socket's path. */
  readonly path: string;
  /** QEMU's `wait`: the VM does not start before the first client connects. */
  readonly wait: boolean;
}

const SUPPORTED = 'unix:PATH,server=on[,wait=off]';

export class QmpSpecError extends SetupError {
  constructor(
    readonly spec: string,
    detail: string,
  ) {
    super(`-qmp ${spec}: ${detail}`);
    this.name = 'QmpSpecError';
  }
}

function parseFlag(spec: string, key: string, value: string): boolean {
  try {
    return parseBool(value);
  } catch (e) {
    throw new QmpSpecError(spec, `${key}=${value}: ${(e as Error).message}`);
  }
}

/** Parses the value of one `-qmp` option. Throws QmpSpecError naming the spec and the problem. */
export function parseQmpSpec(text: string): QmpSpec {
  if (!text.startsWith('unix:')) {
    const kind = /^[a-z]+/.exec(text)?.[0] ?? text;
    throw new QmpSpecError(text, `'${kind}' is not supported; tsvmm serves QMP on a unix socket: ${SUPPORTED}`);
  }
  if (text === 'unix:') throw new QmpSpecError(text, `the socket path is missing (${SUPPORTED})`);
  let opts: QemuOpts;
  try {
    opts = parseQemuOpts(text.slice('unix:'.length), { option: '-qmp', impliedKey: 'path' });
  } catch (e) {
    if (e instanceof QemuOptsError) throw new QmpSpecError(text, e.message.replace(/^-qmp: /, ''));
    throw e;
  }
  const path = opts.get('path');
  if (path === undefined || path === '') throw new QmpSpecError(text, `the socket path is missing (${SUPPORTED})`);
  let server: boolean | undefined;
  let wait: boolean | undefined;
  for (const [key, value] of opts.entries()) {
    switch (key) {
      case 'path':
        break;
      case 'server':
        server = parseFlag(text, key, value);
        break;
      case 'wait':
        wait = parseFlag(text, key, value);
        break;
      // QemuOpts' legacy negated booleans (`nowait` = wait=off), which older scripts still use.
      case 'nowait':
        wait = !parseFlag(text, key, value);
        break;
      case 'noserver':
        server = !parseFlag(text, key, value);
        break;
      default:
        throw new QmpSpecError(text, `unknown parameter '${key}' (known: server, wait)`);
    }
  }
  if (server !== true) {
    throw new QmpSpecError(text, `tsvmm only listens for QMP clients; add ',server=on' (${SUPPORTED})`);
  }
  return { path, wait: wait ?? true };
}
