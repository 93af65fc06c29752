// The QMP commands and events tsvmm speaks, with QEMU 10.0's names, argument schemas and result shapes (qapi/*.json
// in QEMU: control.json, machine.json, run-state.json, migration.json, sockets.json), plus the CPR seed's
// cpr-save/cpr-load. The server validates arguments against these schemas; the machine registers handlers whose
// argument and result types follow from here (QmpHandlers).
//
// Only the parts of a QEMU type that a client may send are in an argument schema; a member QEMU knows but tsvmm
// has no use for is still declared (so it validates as in QEMU) and it is the handler's choice to accept it as a
// no-op or refuse it with a clear error.

import { Q, type Infer, type InferMembers, type Members } from './qapi.js';
import type { PciInfo } from './pci-query.js';

// ---- shared types --------------------------------------------------------------------------------------------

/** QMPCapability (control.json): the only capability QEMU has. tsvmm offers none. */
export const QMPCapability = Q.enum(['oob']);

/** RunState (run-state.json), QEMU's names for what query-status reports. */
export type RunState =
  | 'debug'
  | 'inmigrate'
  | 'internal-error'
  | 'io-error'
  | 'paused'
  | 'postmigrate'
  | 'prelaunch'
  | 'finish-migrate'
  | 'restore-vm'
  | 'running'
  | 'save-vm'
  | 'shutdown'
  | 'suspended'
  | 'watchdog'
  | 'guest-panicked'
  | 'colo';

/** ShutdownCause (run-state.json), carried by SHUTDOWN and RESET. */
export type ShutdownCause =
  | 'none'
  | 'host-error'
  | 'host-qmp-quit'
  | 'host-qmp-system-reset'
  | 'host-signal'
  | 'host-ui'
  | 'guest-shutdown'
  | 'guest-reset'
  | 'guest-panic'
  | 'subsystem-reset'
  | 'snapshot-load';

export interface VersionTriple {
  major: number;
  minor: number;
  micro: number;
}
export interface VersionInfo {
  qemu: VersionTriple;
  package: string;
}
export interface CommandInfo {
  name: string;
}
export interface StatusInfo {
  running: boolean;
  status: RunState;
}
export interface NameInfo {
  name?: string;
}
export interface KvmInfo {
  enabled: boolean;
  present: boolean;
}
/** PciInfo (pci.json): query-pci's answer, one element per bus. */
export type { PciInfo };

/** CpuInstanceProperties (machine.json): where a CPU sits in the topology. */
export interface CpuInstanceProperties {
  'node-id'?: number;
  'drawer-id'?: number;
  'book-id'?: number;
  'socket-id'?: number;
  'die-id'?: number;
  'cluster-id'?: number;
  'module-id'?: number;
  'core-id'?: number;
  'thread-id'?: number;
}
/** CpuInfoFast (machine.json): one element of query-cpus-fast. `thread-id` is the host thread running the vCPU. */
export interface CpuInfoFast {
  'cpu-index': number;
  'qom-path': string;
  'thread-id': number;
  props?: CpuInstanceProperties;
  target: 'x86_64' | 'i386';
}

// ---- migration (migration.json) ------------------------------------------------------------------------------

export const MigMode = Q.enum(['normal', 'cpr-reboot', 'cpr-transfer', 'cpr-exec']);
export type MigMode = Infer<typeof MigMode>;

export const MigrationCapability = Q.enum([
  'xbzrle',
  'rdma-pin-all',
  'auto-converge',
  'zero-blocks',
  'events',
  'postcopy-ram',
  'x-colo',
  'release-ram',
  'return-path',
  'pause-before-switchover',
  'multifd',
  'dirty-bitmaps',
  'postcopy-blocktime',
  'late-block-activate',
  'x-ignore-shared',
  'validate-uuid',
  'background-snapshot',
  'zero-copy-send',
  'postcopy-preempt',
  'switchover-ack',
  'dirty-limit',
  'mapped-ram',
]);
export type MigrationCapability = Infer<typeof MigrationCapability>;

export const MigrationCapabilityStatus = Q.struct({ capability: MigrationCapability, state: Q.bool });
export type MigrationCapabilityStatus = Infer<typeof MigrationCapabilityStatus>;

export type MigrationStatus =
  | 'none'
  | 'setup'
  | 'cancelling'
  | 'cancelled'
  | 'active'
  | 'postcopy-active'
  | 'postcopy-paused'
  | 'postcopy-recover-setup'
  | 'postcopy-recover'
  | 'completed'
  | 'failed'
  | 'colo'
  | 'pre-switchover'
  | 'device'
  | 'wait-unplug';

export const MultiFDCompression = Q.enum(['none', 'zlib', 'zstd', 'qpl', 'uadk', 'qatzip']);
export const ZeroPageDetection = Q.enum(['none', 'legacy', 'multifd']);
/** StrOrNull (common.json): tls-* parameters take a string, or null for "reset to default". */
export const StrOrNull = Q.alternate('StrOrNull', [Q.str, Q.null]);

const BitmapMigrationNodeAlias = Q.struct({
  'node-name': Q.str,
  alias: Q.str,
  bitmaps: Q.array(Q.struct({ name: Q.str, alias: Q.str, '*transform': Q.struct({ '*persistent': Q.bool }) })),
});

/** MigrateSetParameters: every member optional; `mode` is the one CPR needs. */
export const MigrateSetParameters = {
  '*announce-initial': Q.size,
  '*announce-max': Q.size,
  '*announce-rounds': Q.size,
  '*announce-step': Q.size,
  '*throttle-trigger-threshold': Q.uint8,
  '*cpu-throttle-initial': Q.uint8,
  '*cpu-throttle-increment': Q.uint8,
  '*cpu-throttle-tailslow': Q.bool,
  '*tls-creds': StrOrNull,
  '*tls-hostname': StrOrNull,
  '*tls-authz': StrOrNull,
  '*max-bandwidth': Q.size,
  '*avail-switchover-bandwidth': Q.size,
  '*downtime-limit': Q.uint64,
  '*x-checkpoint-delay': Q.uint32,
  '*multifd-channels': Q.uint8,
  '*xbzrle-cache-size': Q.size,
  '*max-postcopy-bandwidth': Q.size,
  '*max-cpu-throttle': Q.uint8,
  '*multifd-compression': MultiFDCompression,
  '*multifd-zlib-level': Q.uint8,
  '*multifd-qatzip-level': Q.uint8,
  '*multifd-zstd-level': Q.uint8,
  '*block-bitmap-mapping': Q.array(BitmapMigrationNodeAlias),
  '*x-vcpu-dirty-limit-period': Q.uint64,
  '*vcpu-dirty-limit': Q.uint64,
  '*mode': MigMode,
  '*zero-page-detection': ZeroPageDetection,
  '*direct-io': Q.bool,
  /** QEMU 10.2: the new QEMU's argv for mode cpr-exec (program first). */
  '*cpr-exec-command': Q.array(Q.str),
} as const satisfies Members;
export type MigrateSetParameters = InferMembers<typeof MigrateSetParameters>;

/** MigrationParameters: what query-migrate-parameters returns (tls-* as plain strings; uint64s may be bigint). */
export type MigrationParameters = {
  [K in keyof MigrateSetParameters]?: K extends 'tls-creds' | 'tls-hostname' | 'tls-authz'
    ? string
    : MigrateSetParameters[K] extends number | undefined
      ? number | bigint
      : MigrateSetParameters[K];
};

/** SocketAddress (sockets.json): a flat union on `type`. */
const InetSocketAddress = {
  host: Q.str,
  port: Q.str,
  '*numeric': Q.bool,
  '*to': Q.uint16,
  '*ipv4': Q.bool,
  '*ipv6': Q.bool,
  '*keep-alive': Q.bool,
  '*keep-alive-count': Q.uint32,
  '*keep-alive-idle': Q.uint32,
  '*keep-alive-interval': Q.uint32,
  '*mptcp': Q.bool,
} as const;
export const SocketAddress = Q.union({ type: Q.enum(['inet', 'unix', 'vsock', 'fd']) }, 'type', {
  inet: Q.struct(InetSocketAddress),
  unix: Q.struct({ path: Q.str, '*abstract': Q.bool, '*tight': Q.bool }),
  vsock: Q.struct({ cid: Q.str, port: Q.str }),
  fd: Q.struct({ str: Q.str }),
});

/** MigrationAddress: a flat union on `transport`; `socket` nests SocketAddress's members at the same level. */
export const MigrationAddress = Q.union({ transport: Q.enum(['socket', 'exec', 'rdma', 'file']) }, 'transport', {
  socket: SocketAddress,
  exec: Q.struct({ args: Q.array(Q.str) }),
  rdma: Q.struct(InetSocketAddress),
  file: Q.struct({ filename: Q.str, offset: Q.uint64 }),
});
export type MigrationAddress = Infer<typeof MigrationAddress>;

/** MigrationChannel: `main` carries the stream; `cpr` (QEMU 10.0) carries cpr-transfer's fds and CPR state. */
export const MigrationChannel = Q.struct({ 'channel-type': Q.enum(['main', 'cpr']), addr: MigrationAddress });
export type MigrationChannel = Infer<typeof MigrationChannel>;

export interface MigrationStats {
  transferred: number;
  remaining: number;
  total: number;
  duplicate: number;
  normal: number;
  'normal-bytes': number;
  'dirty-pages-rate': number;
  mbps: number;
  'dirty-sync-count': number;
  'postcopy-requests': number;
  'page-size': number;
  'multifd-bytes': number;
  'pages-per-second': number;
  'precopy-bytes': number;
  'downtime-bytes': number;
  'postcopy-bytes': number;
  'dirty-sync-missed-zero-copy': number;
}

/** MigrationInfo: query-migrate's result. `{}` before the first migration. */
export interface MigrationInfo {
  status?: MigrationStatus;
  ram?: Partial<MigrationStats>;
  'total-time'?: number;
  'expected-downtime'?: number;
  downtime?: number;
  'setup-time'?: number;
  'error-desc'?: string;
  'blocked-reasons'?: string[];
}

// ---- commands ------------------------------------------------------------------------------------------------

export interface CommandSchema {
  /** Argument members (QAPI style, '*' marks optional). Absent: the command takes no arguments. */
  readonly args?: Members;
}

/** Every command tsvmm knows, with its arguments. */
export const QMP_COMMANDS = {
  // built into the server
  qmp_capabilities: { args: { '*enable': Q.array(QMPCapability) } },
  'query-commands': {},
  'query-version': {},
  // run state (the machine)
  'query-status': {},
  stop: {},
  cont: {},
  quit: {},
  system_reset: {},
  system_powerdown: {},
  system_wakeup: {},
  'query-cpus-fast': {},
  'query-name': {},
  'query-kvm': {},
  'query-pci': {},
  pmemsave: { args: { val: Q.uint64, size: Q.uint64, filename: Q.str } },
  // CPR, the seed's spelling
  'cpr-save': { args: { filename: Q.str, mode: Q.str } },
  'cpr-load': { args: { filename: Q.str, mode: Q.str } },
  // CPR, QEMU's migration spelling
  'migrate-set-parameters': { args: MigrateSetParameters },
  'migrate-set-capabilities': { args: { capabilities: Q.array(MigrationCapabilityStatus) } },
  migrate: { args: { '*uri': Q.str, '*channels': Q.array(MigrationChannel), '*detach': Q.bool, '*resume': Q.bool } },
  'migrate-incoming': { args: { '*uri': Q.str, '*channels': Q.array(MigrationChannel), '*exit-on-error': Q.bool } },
  migrate_cancel: {},
  'query-migrate': {},
  // Descriptors passed with SCM_RIGHTS (QEMU's monitor/fds.c): built into the server.
  getfd: { args: { fdname: Q.str } },
  closefd: { args: { fdname: Q.str } },
  'query-migrate-parameters': {},
  'query-migrate-capabilities': {},
} as const satisfies Record<string, CommandSchema>;

export type QmpCommandName = keyof typeof QMP_COMMANDS;
/** Commands the server answers itself. */
export type BuiltinCommandName = 'qmp_capabilities' | 'query-commands' | 'query-version' | 'getfd' | 'closefd';
/** Commands the machine provides handlers for. */
export type MachineCommandName = Exclude<QmpCommandName, BuiltinCommandName>;

type ArgsOf<S> = S extends { readonly args: infer M extends Members } ? InferMembers<M> : Record<string, never>;
/** The validated arguments a handler of command N receives. */
export type QmpCommandArgs<N extends QmpCommandName> = ArgsOf<(typeof QMP_COMMANDS)[N]>;

/** What each command returns (`void` → `{}` on the wire). */
export interface QmpCommandReturns {
  qmp_capabilities: void;
  'query-commands': CommandInfo[];
  'query-version': VersionInfo;
  'query-status': StatusInfo;
  stop: void;
  cont: void;
  quit: void;
  system_reset: void;
  system_powerdown: void;
  system_wakeup: void;
  'query-cpus-fast': CpuInfoFast[];
  'query-name': NameInfo;
  'query-kvm': KvmInfo;
  'query-pci': PciInfo[];
  pmemsave: void;
  'cpr-save': void;
  'cpr-load': void;
  'migrate-set-parameters': void;
  'migrate-set-capabilities': void;
  migrate: void;
  'migrate-incoming': void;
  migrate_cancel: void;
  'query-migrate': MigrationInfo;
  'query-migrate-parameters': MigrationParameters;
  'query-migrate-capabilities': MigrationCapabilityStatus[];
  getfd: void;
  closefd: void;
}

// ---- events --------------------------------------------------------------------------------------------------

/**
 * Events and their `data` (`undefined`: the event has no data member). An interface, so another module can add
 * an event by declaration merging.
 */
export interface QmpEvents {
  STOP: undefined;
  RESUME: undefined;
  SHUTDOWN: { guest: boolean; reason: ShutdownCause };
  RESET: { guest: boolean; reason: ShutdownCause };
  POWERDOWN: undefined;
  SUSPEND: undefined;
  WAKEUP: undefined;
  GUEST_PANICKED: { action: 'pause' | 'poweroff' | 'run'; info?: Record<string, unknown> };
  MIGRATION: { status: MigrationStatus };
  MIGRATION_PASS: { pass: number };
}
export type QmpEventName = keyof QmpEvents;
