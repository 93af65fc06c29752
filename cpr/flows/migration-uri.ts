// Where a reboot-mode checkpoint goes or comes from, in QEMU's URI spelling: `file:PATH`, `fd:NAME` (a descriptor
// passed over QMP with getfd; on the command line, `-incoming fd:N` names an inherited fd number) and
// `exec:COMMAND` (run by /bin/sh -c; its stdin takes the outgoing stream, its stdout gives the incoming one).
// The same three as MigrationAddress channels: {"transport": "file", "filename"}, {"transport": "socket", "type":
// "fd", "str"} and {"transport": "exec", "args": [argv…]} (argv run as it is, as QEMU does).
import { CprError } from './cpr-error.js';

export type MigrationUri =
  | { readonly transport: 'file'; readonly path: string }
  | { readonly transport: 'fd'; readonly fd: string }
  | { readonly transport: 'exec'; readonly argv: readonly string[] };

const SUPPORTED = 'use file:PATH, fd:NAME or exec:COMMAND (or the cpr channel for cpr-transfer)';

/** Parses a `migrate`/`migrate-incoming`/-incoming URI; a refusal is a one-line CprError. */
export function parseMigrationUri(uri: string): MigrationUri {
  const colon = uri.indexOf(':');
  const scheme = colon < 0 ? uri : uri.slice(0, colon);
  const rest = colon < 0 ? '' : uri.slice(colon + 1);
  switch (scheme) {
    case 'file':
      if (rest === '') throw new CprError(`migration URI '${uri}' has no path`);
      if (/,offset=/.test(rest)) throw new CprError(`migration URI '${uri}': offset= is not supported`);
      return { transport: 'file', path: rest };
    case 'fd':
      if (rest === '') throw new CprError(`migration URI '${uri}' has no file descriptor name`);
      return { transport: 'fd', fd: rest };
    case 'exec':
      if (rest.trim() === '') throw new CprError(`migration URI '${uri}' has no command`);
      return { transport: 'exec', argv: ['/bin/sh', '-c', rest] };
    default:
      throw new CprError(`migration URI '${uri}' is not supported: ${SUPPORTED}`);
  }
}

/** A MigrationAddress (the `main` channel of migrate/migrate-incoming) as a MigrationUri. */
export function channelUri(addr: {
  transport: string;
  filename?: string;
  type?: string;
  str?: string;
  args?: readonly string[];
}): MigrationUri {
  if (addr.transport === 'file' && addr.filename) return { transport: 'file', path: addr.filename };
  if (addr.transport === 'socket' && addr.type === 'fd' && addr.str) return { transport: 'fd', fd: addr.str };
  if (addr.transport === 'exec' && addr.args && addr.args.length > 0) {
    if (addr.args[0] === '') throw new CprError('migration channel: exec args[0] is empty');
    return { transport: 'exec', argv: [...addr.args] };
  }
  throw new CprError(
    'the main channel must be a file ({"transport": "file", "filename"}), an fd ({"transport": "socket", "type": "fd", "str"}) or a command ({"transport": "exec", "args"})',
  );
}

/** How a URI reads in messages: the command line of an exec, else as given. */
export function describeUri(uri: MigrationUri): string {
  if (uri.transport === 'file') return `file:${uri.path}`;
  if (uri.transport === 'fd') return `fd:${uri.fd}`;
  return uri.argv[0] === '/bin/sh' && uri.argv[1] === '-c' ? `exec:${uri.argv[2]}` : `exec:${uri.argv.join(' ')}`;
}
