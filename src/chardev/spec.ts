// Character backend specs, in QEMU's spelling.
//
// `-serial` style (parseCharSpec):
//   stdio                              the terminal (raw mode on a TTY, escape Ctrl-a; see stdio.ts)
//   file:PATH                          output to PATH (created or truncated); no input
//   unix:PATH,server[,wait=off]        tsvmm listens on a unix socket (mode 0600); one client at a time
//   unix:PATH                          tsvmm connects to an existing socket as a client
//   pipe:PATH                          PATH.in / PATH.out FIFOs if both exist, else the FIFO PATH both ways
//   null                               output dropped, no input
//   none                               QEMU: no device at all (the machine leaves the port out); here a null sink
// Unix-socket options follow QemuOpts: `server` = `server=on`, `nowait` = `wait=off`, values on/off/yes/no/
// true/false, and `,,` is a literal comma in the path. As in QEMU, a server waits for its first client before the
// VM starts unless `wait=off`.
//
// `-chardev` style (charSpecFromChardev): the CLI parses `-chardev BACKEND,id=…,key=value…` with its QemuOpts
// parser and hands over the backend name and the remaining options; supported are stdio, file (path, append),
// socket (path, server, wait), pipe (path) and null.

export type CharSpec =
  | { readonly kind: 'stdio' }
  | { readonly kind: 'file'; readonly path: string; readonly append: boolean }
  | { readonly kind: 'unix'; readonly path: string; readonly server: boolean; readonly wait: boolean }
  | { readonly kind: 'pipe'; readonly path: string }
  | { readonly kind: 'null' }
  | { readonly kind: 'none' };

export class CharSpecError extends Error {
  constructor(
    readonly spec: string,
    detail: string,
  ) {
    super(`character device '${spec}': ${detail}`);
    this.name = 'CharSpecError';
  }
}

const SUPPORTED = 'stdio, file:PATH, unix:PATH[,server][,wait=off], pipe:PATH, null, none';

/** A `-serial`-style spec. Throws CharSpecError naming the spec and what is wrong with it. */
export function parseCharSpec(text: string): CharSpec {
  switch (text) {
    case 'stdio':
      return { kind: 'stdio' };
    case 'null':
      return { kind: 'null' };
    case 'none':
      return { kind: 'none' };
    case 'mon:stdio':
      throw new CharSpecError(text, 'there is no HMP monitor to multiplex; use stdio (Ctrl-a x quits, Ctrl-a h helps)');
  }
  const colon = text.indexOf(':');
  const prefix = colon < 0 ? text : text.slice(0, colon);
  const rest = colon < 0 ? '' : text.slice(colon + 1);
  switch (prefix) {
    case 'file':
      return { kind: 'file', path: requirePath(text, rest), append: false };
    case 'pipe':
      return { kind: 'pipe', path: requirePath(text, rest) };
    case 'unix': {
      const items = splitOpts(rest);
      const path = requirePath(text, items.shift() ?? '');
      const opts = new Map<string, string>();
      for (const item of items) {
        const eq = item.indexOf('=');
        let key = eq < 0 ? item : item.slice(0, eq);
        let value = eq < 0 ? 'on' : item.slice(eq + 1);
        // QemuOpts' legacy boolean negation: `nowait` means wait=off.
        if (eq < 0 && key.startsWith('no') && (key === 'nowait' || key === 'noserver')) {
          key = key.slice(2);
          value = 'off';
        }
        opts.set(key, value);
      }
      return unixSpec(text, path, opts);
    }
    default:
      throw new CharSpecError(text, `unsupported backend (supported: ${SUPPORTED})`);
  }
}

/** A `-chardev BACKEND,…` spec from already-parsed options (without `id`). */
export function charSpecFromChardev(backend: string, options: Readonly<Record<string, string>>): CharSpec {
  const opts = new Map(Object.entries(options));
  opts.delete('id');
  const label = `-chardev ${backend}`;
  const only = (...allowed: string[]) => {
    for (const key of opts.keys()) {
      if (!allowed.includes(key))
        throw new CharSpecError(label, `unsupported option '${key}' (supported: ${allowed.join(', ') || 'none'})`);
    }
  };
  switch (backend) {
    case 'stdio':
      only();
      return { kind: 'stdio' };
    case 'null':
      only();
      return { kind: 'null' };
    case 'file':
      only('path', 'append');
      return {
        kind: 'file',
        path: requirePath(label, opts.get('path') ?? ''),
        append: onOff(label, 'append', opts.get('append'), false),
      };
    case 'pipe':
      only('path');
      return { kind: 'pipe', path: requirePath(label, opts.get('path') ?? '') };
    case 'socket': {
      if (opts.has('host') || opts.has('port'))
        throw new CharSpecError(label, 'only unix sockets (path=) are supported');
      const path = requirePath(label, opts.get('path') ?? '');
      opts.delete('path');
      return unixSpec(label, path, opts);
    }
    default:
      throw new CharSpecError(label, 'unsupported backend (supported: stdio, file, socket, pipe, null)');
  }
}

function unixSpec(label: string, path: string, opts: Map<string, string>): CharSpec {
  for (const key of opts.keys()) {
    if (key !== 'server' && key !== 'wait')
      throw new CharSpecError(label, `unsupported option '${key}' (supported: server, wait)`);
  }
  const server = onOff(label, 'server', opts.get('server'), false);
  const wait = onOff(label, 'wait', opts.get('wait'), true);
  if (!server && opts.has('wait')) throw new CharSpecError(label, "'wait' applies only to a server socket");
  return { kind: 'unix', path, server, wait: server && wait };
}

function onOff(label: string, key: string, value: string | undefined, fallback: boolean): boolean {
  if (value === undefined) return fallback;
  switch (value) {
    case 'on':
    case 'yes':
    case 'true':
      return true;
    case 'off':
    case 'no':
    case 'false':
      return false;
  }
  throw new CharSpecError(label, `'${key}=${value}' is not a boolean (use on or off)`);
}

function requirePath(label: string, path: string): string {
  if (path === '') throw new CharSpecError(label, 'a path is required');
  if (path.includes('\0')) throw new CharSpecError(label, 'the path contains a NUL byte');
  return path;
}

/** Split at single commas; `,,` is a literal comma (QemuOpts). */
function splitOpts(text: string): string[] {
  const items: string[] = [];
  let current = '';
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c !== ',') {
      current += c;
      continue;
    }
    if (text[i + 1] === ',') {
      current += ',';
      i++;
      continue;
    }
    items.push(current);
    current = '';
  }
  items.push(current);
  // A trailing comma is ignored. (An empty item elsewhere cannot occur: two commas in a row are an escape.)
  if (items.length > 1 && items[items.length - 1] === '') items.pop();
  return items;
}
