// The QMP server: QEMU's Machine Protocol on a unix socket, wire-compatible with QEMU's so existing clients (socat
// by hand, QEMU's Python qemu.qmp, libvirt-style clients) work unchanged. It knows nothing of KVM: the machine
// registers typed handlers for the commands in schema.ts and emits events.
//
//   const qmp = await QmpServer.listen('unix:/run/vm.qmp,server,wait=off', {
//     version: '0.1.0',
//     commands: { 'query-status': () => ({ running: true, status: 'running' }), stop: () => { … } },
//     log: line => console.error(line),
//   });
//   if (qmp.wait) await qmp.firstClient;   // QEMU's wait=on: the VM starts once the first client is connected
//   qmp.emit('STOP');
//
// Protocol (QEMU's docs/interop/qmp-spec.rst, with QEMU's own wording for every error a client can provoke):
// - greeting `{"QMP": {"version": {"qemu": {"micro", "minor", "major"}, "package"}, "capabilities": []}}`;
//   tsvmm reports QEMU 10.0.0 — the QEMU whose QMP commands, migration modes (cpr-reboot, cpr-transfer with its
//   `cpr` channel) and result shapes it follows — and "tsvmm VERSION" as the package. No capability is offered
//   (no out-of-band execution), so `exec-oob` is always refused.
// - until `qmp_capabilities`, every other command is refused (CommandNotFound, "Expecting capabilities
//   negotiation with 'qmp_capabilities'"); each client negotiates for itself; events go to negotiated clients only.
// - requests `{"execute", "arguments"?, "id"?}`; `id` (any JSON) is echoed in the reply whenever the request was an
//   object; replies `{"return": …}` or `{"error": {"class", "desc"}}`; events `{"timestamp": {"seconds",
//   "microseconds"}, "event", "data"?}` with the wall clock.
// - arguments are validated against the command's schema before its handler runs (qapi.ts).
// - one command runs at a time across all clients (QEMU runs them under its big lock in the main loop), so a
//   handler never races another; each client's replies come in its request order (session.ts).
// - input limits: a message may be at most 1 MiB and nest 1024 deep; see json-stream.ts for how the stream recovers.

import net from 'node:net';
import { QmpError } from './errors.js';
import { formatQmpJson } from './json-format.js';
import { DEFAULT_MAX_DEPTH } from './json-stream.js';
import { isPlainObject, validateArguments, type InferMembers, type Members } from './qapi.js';
import {
  QMP_COMMANDS,
  type MachineCommandName,
  type QmpCommandArgs,
  type QmpCommandReturns,
  type QmpEventName,
  type QmpEvents,
  type VersionInfo,
  type VersionTriple,
} from './schema.js';
import { QmpSession, type ReplyHooks, type SessionHost } from './session.js';
import { FdReadiness } from '../sys/fd-readiness.js';
import { closeAll } from '../sys/socket.js';
import { adoptSocketFile, listenSocketFile, type SocketFile } from '../sys/socket-file.js';
import { parseQmpSpec, type QmpSpec } from './spec.js';

// One import for the machine: the server, its errors, the schema helpers and types.
export { QmpError, genericError, type QmpErrorClass } from './errors.js';
export { Q } from './qapi.js';
export { parseQmpSpec, QmpSpecError, type QmpSpec } from './spec.js';
export type * from './schema.js';

/** The QEMU release whose QMP tsvmm follows (see the file comment). */
export const QEMU_COMPAT_VERSION: VersionTriple = { major: 10, minor: 0, micro: 0 };
/** Largest request accepted, in bytes. */
export const MAX_MESSAGE_BYTES = 1024 * 1024;
/** Named descriptors (getfd) one server keeps at most: a client cannot make it hoard fds. */
export const MAX_NAMED_FDS = 64;

/** What a handler gets besides its arguments. */
export interface CommandContext {
  /** Which connection sent the command (1, 2, … in connection order). */
  readonly clientId: number;
  /**
   * Runs `fn` after the reply has been written to the client (or at once if it left): `quit` answers first and
   * then ends the process, as QEMU does.
   */
  afterReply(fn: () => void): void;
  /**
   * The descriptor a client stored with getfd under `name`, handed over: the server forgets it and the caller owns
   * (and must close) it — QEMU's monitor_get_fd. Undefined when there is none by that name.
   */
  takeNamedFd(name: string): number | undefined;
}

export type QmpHandler<N extends MachineCommandName> = (
  args: QmpCommandArgs<N>,
  ctx: CommandContext,
) => QmpCommandReturns[N] | Promise<QmpCommandReturns[N]>;

/** The machine's handlers for schema.ts's commands; a command without a handler does not exist for clients. */
export type QmpHandlers = { [N in MachineCommandName]?: QmpHandler<N> };

/** A command outside schema.ts (a tsvmm-specific query), with its own argument schema: see defineCommand. */
export interface ExtraCommand {
  readonly args?: Members;
  readonly run: (args: never, ctx: CommandContext) => unknown;
}

/** Declares an extra command with typed arguments: `defineCommand({ '*verbose': Q.bool }, args => …)`. */
export function defineCommand<const M extends Members>(
  args: M,
  run: (args: InferMembers<M>, ctx: CommandContext) => unknown,
): ExtraCommand {
  return { args, run };
}

export interface QmpServerOptions {
  /** tsvmm's version, reported as the greeting's and query-version's `package` ("tsvmm VERSION"). */
  version: string;
  /** The QEMU version to claim; QEMU_COMPAT_VERSION unless told. */
  qemuVersion?: VersionTriple;
  commands: QmpHandlers;
  extraCommands?: Readonly<Record<string, ExtraCommand>>;
  /** Problems worth a line on the console: a handler that threw a non-QMP error, a client dropped for not reading. */
  log?: (line: string) => void;
  /** CLOCK_REALTIME in ns for event timestamps (the machine passes libc's clockNs); a wall clock by default. */
  realtimeNs?: () => bigint;
  /** Request size limit; MAX_MESSAGE_BYTES unless told. */
  maxMessageBytes?: number;
  /**
   * A listening socket already bound at the spec's path, inherited across a cpr-exec: served as it is (clients
   * that connected during the exec wait in its backlog), instead of binding a new one.
   */
  inheritedFd?: number;
}

type RunFn = (args: Record<string, unknown>, ctx: CommandContext, session: QmpSession) => unknown;
interface Registered {
  readonly args: Members;
  readonly run: RunFn;
}

const BUILTINS = new Set(['qmp_capabilities', 'query-commands', 'query-version', 'getfd', 'closefd']);
/** Capabilities offered in the greeting; qmp_capabilities refuses any other. */
const OFFERED_CAPABILITIES: readonly string[] = [];

function wallClockNs(): bigint {
  return BigInt(Math.round((performance.timeOrigin + performance.now()) * 1000)) * 1000n;
}

export class QmpServer {
  /** The socket's path. */
  readonly path: string;
  /** QEMU's `wait`: true unless the spec said wait=off. */
  readonly wait: boolean;
  /** Resolves when the first client connects (or the server closes). */
  readonly firstClient: Promise<void>;
  private resolveFirstClient!: () => void;
  private readonly commands = new Map<string, Registered>();
  private readonly sessions = new Set<QmpSession>();
  // Paused: libuv must never read a connection (it would drop SCM_RIGHTS fds); connection-input.ts reads them.
  private readonly netServer = net.createServer({ allowHalfOpen: true, pauseOnConnect: true });
  private readonly readiness = new FdReadiness();
  /**
   * getfd's descriptors by name. Per server, as QEMU keeps them per monitor: they outlive the connection that sent
   * them (libvirt may reconnect between getfd and migrate) and are closed with the server.
   */
  private readonly namedFds = new Map<string, number>();
  private socketFile: SocketFile | undefined;
  private nextClientId = 1;
  private commandTail: Promise<unknown> = Promise.resolve();
  private closing: Promise<void> | undefined;
  private readonly host: SessionHost;
  private readonly log: (line: string) => void;
  private readonly realtimeNs: () => bigint;
  private readonly versionInfo: VersionInfo;

  /** Creates the socket and starts accepting clients. Does not wait for a client: see `wait` and `firstClient`. */
  static async listen(spec: string | QmpSpec, options: QmpServerOptions): Promise<QmpServer> {
    const parsed = typeof spec === 'string' ? parseQmpSpec(spec) : spec;
    const server = new QmpServer(parsed, options);
    server.socketFile =
      options.inheritedFd === undefined
        ? await listenSocketFile(parsed.path, server.netServer, server.log)
        : await adoptSocketFile(parsed.path, options.inheritedFd, server.netServer);
    if (parsed.wait)
      server.log(`tsvmm: waiting for a QMP connection on unix:${parsed.path},server=on (add ,wait=off not to wait)`);
    return server;
  }

  private constructor(spec: QmpSpec, options: QmpServerOptions) {
    this.path = spec.path;
    this.wait = spec.wait;
    this.log = options.log ?? (() => {});
    this.realtimeNs = options.realtimeNs ?? wallClockNs;
    const qemu = options.qemuVersion ?? QEMU_COMPAT_VERSION;
    this.versionInfo = {
      qemu: { micro: qemu.micro, minor: qemu.minor, major: qemu.major },
      package: `tsvmm ${options.version}`,
    };
    this.firstClient = new Promise((resolve) => {
      this.resolveFirstClient = resolve;
    });
    this.registerBuiltins();
    for (const [name, run] of Object.entries(options.commands) as Array<[string, RunFn | undefined]>) {
      if (run === undefined) continue;
      if (!Object.hasOwn(QMP_COMMANDS, name))
        throw new Error(`QMP: '${name}' is not in schema.ts; declare it in extraCommands`);
      if (BUILTINS.has(name)) throw new Error(`QMP: '${name}' is built into the server`);
      const schema = QMP_COMMANDS[name as MachineCommandName] as { args?: Members };
      this.commands.set(name, { args: schema.args ?? {}, run });
    }
    for (const [name, extra] of Object.entries(options.extraCommands ?? {})) {
      if (this.commands.has(name) || Object.hasOwn(QMP_COMMANDS, name))
        throw new Error(`QMP: extra command '${name}' clashes with a known command`);
      this.commands.set(name, { args: extra.args ?? {}, run: extra.run as unknown as RunFn });
    }
    this.host = {
      limits: { maxMessageBytes: options.maxMessageBytes ?? MAX_MESSAGE_BYTES, maxDepth: DEFAULT_MAX_DEPTH },
      greeting: { QMP: { version: this.versionInfo, capabilities: OFFERED_CAPABILITIES } },
      readiness: this.readiness,
      dispatch: (session, request, hooks) => this.dispatch(session, request, hooks),
      sessionClosed: (session) => {
        this.sessions.delete(session);
      },
      log: this.log,
    };
    this.netServer.on('connection', (socket) => {
      if (this.closing) {
        socket.destroy();
        return;
      }
      try {
        this.sessions.add(new QmpSession(this.nextClientId++, socket, this.host));
      } catch (error) {
        // Out of fds (EMFILE on the duplicate it reads): this client is refused, the server goes on.
        this.log(`QMP: cannot serve a new connection: ${(error as Error).message}`);
        socket.destroy();
        return;
      }
      this.resolveFirstClient();
    });
    this.netServer.on('error', (error) => this.log(`QMP server: ${error.message}`));
  }

  /** The listening socket's fd (kept across a cpr-exec), or undefined. */
  get listeningFd(): number | undefined {
    return this.socketFile?.fd;
  }

  /** Resolves once every client has been sent what was written to it (or after `timeoutMs`). */
  async flush(timeoutMs = 500): Promise<void> {
    await Promise.all([...this.sessions].map((s) => s.flushed(timeoutMs)));
  }

  /** Connected clients. */
  get clientCount(): number {
    return this.sessions.size;
  }

  /** The commands clients can run, as query-commands lists them. */
  commandNames(): string[] {
    return [...this.commands.keys()];
  }

  /** Sends an event to every negotiated client: `emit('STOP')`, `emit('SHUTDOWN', { guest: false, reason: 'host-qmp-quit' })`. */
  emit<K extends QmpEventName>(name: K, ...data: QmpEvents[K] extends undefined ? [] : [QmpEvents[K]]): void {
    const ns = this.realtimeNs();
    const message: Record<string, unknown> = {
      timestamp: { seconds: Number(ns / 1_000_000_000n), microseconds: Number((ns % 1_000_000_000n) / 1000n) },
      event: name,
    };
    if (data.length > 0 && data[0] !== undefined) message.data = data[0];
    const line = formatQmpJson(message);
    for (const session of this.sessions) session.event(line);
  }

  /** Stops accepting clients, ends every connection (queued requests are dropped) and removes the socket file. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      await Promise.all([...this.sessions].map((s) => s.stop()));
      await this.socketFile?.close();
      closeAll([...this.namedFds.values()]);
      this.namedFds.clear();
      this.resolveFirstClient();
    })();
    return this.closing;
  }

  private registerBuiltins(): void {
    this.commands.set('qmp_capabilities', {
      args: QMP_COMMANDS.qmp_capabilities.args,
      run: (args, _ctx, session) => {
        if (session.negotiated)
          throw new QmpError('CommandNotFound', 'Capabilities negotiation is already complete, command ignored');
        const unavailable = ((args.enable ?? []) as string[]).filter((c) => !OFFERED_CAPABILITIES.includes(c));
        if (unavailable.length > 0)
          throw new QmpError('GenericError', `Capability ${unavailable.join(', ')} not available`);
        session.negotiated = true;
      },
    });
    this.commands.set('query-commands', { args: {}, run: () => this.commandNames().map((name) => ({ name })) });
    this.commands.set('query-version', { args: {}, run: () => this.versionInfo });
    // QEMU's monitor/fds.c, its error texts included.
    this.commands.set('getfd', {
      args: QMP_COMMANDS.getfd.args,
      run: (args, _ctx, session) => {
        const name = args.fdname as string;
        const fd = session.takeReceivedFd();
        if (fd === undefined) throw new QmpError('GenericError', 'No file descriptor supplied via SCM_RIGHTS');
        let refusal: string | undefined;
        if (/^[0-9]/.test(name)) refusal = "Parameter 'fdname' expects a name not starting with a digit";
        else if (!this.namedFds.has(name) && this.namedFds.size >= MAX_NAMED_FDS)
          refusal = `too many named file descriptors (${MAX_NAMED_FDS}): closefd one first`;
        if (refusal !== undefined) {
          closeAll([fd]);
          throw new QmpError('GenericError', refusal);
        }
        const old = this.namedFds.get(name);
        if (old !== undefined) closeAll([old]); // the same name again replaces (and closes) the old one
        this.namedFds.set(name, fd);
      },
    });
    this.commands.set('closefd', {
      args: QMP_COMMANDS.closefd.args,
      run: (args) => {
        const name = args.fdname as string;
        const fd = this.namedFds.get(name);
        if (fd === undefined) throw new QmpError('GenericError', `File descriptor named '${name}' not found`);
        this.namedFds.delete(name);
        closeAll([fd]);
      },
    });
  }

  /** See CommandContext.takeNamedFd. */
  private takeNamedFd(name: string): number | undefined {
    const fd = this.namedFds.get(name);
    this.namedFds.delete(name);
    return fd;
  }

  /** One command at a time across all clients. */
  private exclusive<T>(fn: () => T | Promise<T>): Promise<T> {
    const run = this.commandTail.then(fn);
    this.commandTail = run.catch(() => {});
    return run;
  }

  private async dispatch(session: QmpSession, request: unknown, hooks: ReplyHooks): Promise<Record<string, unknown>> {
    if (!isPlainObject(request)) return { error: { class: 'GenericError', desc: 'QMP input must be a JSON object' } };
    const hasId = Object.hasOwn(request, 'id');
    // QEMU's key order: "return" before "id", "id" before "error".
    const success = (value: unknown) => (hasId ? { return: value, id: request.id } : { return: value });
    const failure = (errorClass: string, desc: string) =>
      hasId ? { id: request.id, error: { class: errorClass, desc } } : { error: { class: errorClass, desc } };
    try {
      for (const key of Object.keys(request)) {
        const member = request[key];
        if (key === 'execute') {
          if (typeof member !== 'string')
            throw new QmpError('GenericError', "QMP input member 'execute' must be a string");
        } else if (key === 'arguments') {
          if (!isPlainObject(member))
            throw new QmpError('GenericError', "QMP input member 'arguments' must be an object");
        } else if (key !== 'id') {
          // including 'exec-oob': out-of-band execution is never negotiated here
          throw new QmpError('GenericError', `QMP input member '${key}' is unexpected`);
        }
      }
      if (!Object.hasOwn(request, 'execute')) throw new QmpError('GenericError', "QMP input lacks member 'execute'");
      const name = request.execute as string;
      if (!session.negotiated && name !== 'qmp_capabilities') {
        throw new QmpError('CommandNotFound', "Expecting capabilities negotiation with 'qmp_capabilities'");
      }
      const command = this.commands.get(name);
      if (command === undefined) throw new QmpError('CommandNotFound', `The command ${name} has not been found`);
      const args = validateArguments(command.args, (request.arguments ?? {}) as Record<string, unknown>);
      const ctx: CommandContext = {
        clientId: session.id,
        afterReply: (fn) => hooks.afterReply(fn),
        takeNamedFd: (fdname) => this.takeNamedFd(fdname),
      };
      const result = await this.exclusive(() => command.run(args, ctx, session));
      return success(result === undefined ? {} : result);
    } catch (error) {
      if (error instanceof QmpError) return failure(error.errorClass, error.desc);
      this.log(`QMP: command ${JSON.stringify(request.execute)} failed: ${(error as Error)?.stack ?? String(error)}`);
      return failure('GenericError', error instanceof Error ? error.message : String(error));
    }
  }
}
