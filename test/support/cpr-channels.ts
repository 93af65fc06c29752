// QEMU's QMP spelling of the cpr-transfer channels (qapi/migration.json: MigrationChannel), which tsvmm takes as QEMU
// does: the drivers of tests and benches spell them here once, for tsvmm and QEMU alike.

/** A MigrationChannel on a unix socket at `path`. */
export function unixChannel(type: 'main' | 'cpr', path: string) {
  return { 'channel-type': type, addr: { transport: 'socket', type: 'unix', path } };
}

/** The `-incoming` argument that makes a new process listen for the old one's cpr channel at `path`. */
export function cprIncomingArg(path: string): string {
  return JSON.stringify(unixChannel('cpr', path));
}

/** The `channels` of the old process's `migrate` in cpr-transfer mode: the main channel and the cpr channel. */
export function cprTransferChannels(mainPath: string, cprPath: string) {
  return [unixChannel('main', mainPath), unixChannel('cpr', cprPath)];
}
