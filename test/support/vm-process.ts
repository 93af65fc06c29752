// A tsvmm process under test with a QMP socket: start it, talk to it, wait for it to end.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cliPath } from './tsvmm.js';
import { QmpClient } from './qmp-client.js';
import { HANG_GUARD_MS, waitFor } from './hang-guard.js';
import { cprIncomingArg, cprTransferChannels } from './cpr-channels.js';
import * as assert from 'uvu/assert';

export interface VmProcess {
  readonly child: ChildProcess;
  readonly qmpPath: string;
  qmp: QmpClient;
  stdout: string;
  stderr: string;
  /** Resolves with the exit status (null when killed by a signal). */
  readonly exited: Promise<number | null>;
  /** Kills the process if it still runs and removes its scratch directory. */
  dispose(): Promise<void>;
}

/** A scratch directory for one test's sockets and files, removed by the caller. */
export function scratchDir(prefix = 'tsvmm-test-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/**
 * Starts `tsvmm run ARGS -qmp unix:DIR/NAME.qmp,server=on,wait=off` and connects a QMP client once it listens.
 * With `stdin`, the process's stdin is a pipe (`child.stdin`: what a guest reads with -serial stdio).
 */
export async function startVm(
  args: string[],
  o: { dir: string; name: string; connect?: boolean; timeoutMs?: number; netns?: string; stdin?: boolean },
): Promise<VmProcess> {
  const qmpPath = join(o.dir, `${o.name}.qmp`);
  const argv = [process.execPath, cliPath, 'run', ...args, '-qmp', `unix:${qmpPath},server=on,wait=off`];
  // In a network namespace (a test's tap lives there): `ip netns exec` execs tsvmm, so the child is tsvmm itself.
  if (o.netns) argv.unshift('ip', 'netns', 'exec', o.netns);
  const child = spawn(argv[0], argv.slice(1), { stdio: [o.stdin ? 'pipe' : 'ignore', 'pipe', 'pipe'] });
  const vm = { child, qmpPath, stdout: '', stderr: '' } as VmProcess & { qmp: QmpClient };
  child.stdout!.on('data', (d) => {
    vm.stdout += d;
  });
  child.stderr!.on('data', (d) => {
    vm.stderr += d;
  });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  Object.assign(vm, {
    exited,
    async dispose() {
      vm.qmp?.close();
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
    },
  });
  if (o.connect !== false) {
    // A hang guard, not a budget: tsvmm took 45-51 s to start in a heavily loaded rig (TCG), where node alone took 11-17 s.
    const deadline = Date.now() + (o.timeoutMs ?? HANG_GUARD_MS);
    while (!existsSync(qmpPath)) {
      if (child.exitCode !== null)
        throw new Error(`tsvmm exited with ${child.exitCode} before its QMP socket appeared:\n${vm.stderr}`);
      if (Date.now() > deadline) {
        // Not left running: a later start with the same socket path would find this one's socket.
        child.kill('SIGKILL');
        throw new Error(`tsvmm's QMP socket ${qmpPath} did not appear:\n${vm.stderr}`);
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    vm.qmp = await QmpClient.connect(qmpPath, o.timeoutMs ?? HANG_GUARD_MS);
  }
  return vm;
}

export function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

/** The arguments that make `tsvmm run` a cpr-transfer target: wait for the state (-incoming defer) on `channel`. */
export function transferTargetArgs(channel: string): string[] {
  return ['-incoming', 'defer', '-incoming', cprIncomingArg(channel)];
}

/**
 * Starts a cpr-transfer target with `args` plus transferTargetArgs(DIR/`channel`) (QMP not connected yet: the
 * hand-over does that) and waits until it listens on the channel. `onSpawn` sees the process at once, so a caller
 * can account for it even if the wait fails.
 */
export async function startTransferTarget(
  args: string[],
  o: { dir: string; name: string; channel?: string; netns?: string; onSpawn?: (vm: VmProcess) => void },
): Promise<{ next: VmProcess; channel: string }> {
  const channel = join(o.dir, o.channel ?? 'cpr.sock');
  const next = await startVm([...args, ...transferTargetArgs(channel)], {
    dir: o.dir,
    name: o.name,
    connect: false,
    netns: o.netns,
  });
  o.onSpawn?.(next);
  await waitFor(
    () => existsSync(channel),
    'the cpr channel appears',
    () => next.stderr,
  );
  return { next, channel };
}

/**
 * QMP migrate in cpr-transfer mode from `old` to `next`; checks it completed and connects QMP to `next`. With
 * `quitOldAtCompleted`, the old process is quit the moment its MIGRATION completed arrives (QEMU's and libvirt's
 * recipe: `completed` means the new process owns the guest) and must exit 0.
 */
export async function cprTransfer(
  old: VmProcess,
  next: VmProcess,
  channel: string,
  dir: string,
  o: { quitOldAtCompleted?: boolean } = {},
): Promise<void> {
  old.qmp.events.length = 0; // only this migration's MIGRATION events count
  await old.qmp.execute('migrate-set-parameters', { mode: 'cpr-transfer' });
  await old.qmp.execute('migrate', {
    channels: cprTransferChannels(join(dir, 'main.sock'), channel),
  });
  const done = await old.qmp.waitEvent(
    'MIGRATION',
    HANG_GUARD_MS,
    (e) => e.data?.status === 'completed' || e.data?.status === 'failed',
  );
  if (o.quitOldAtCompleted && done.data?.status === 'completed') {
    await old.qmp.execute('quit');
    assert.is(await old.exited, 0, `the old tsvmm quit at completed:\n${old.stderr}`);
  } else {
    const info = await old.qmp.execute('query-migrate');
    assert.is(info.status, 'completed', `${JSON.stringify(info)}\nold:\n${old.stderr}\nnew:\n${next.stderr}`);
    assert.is((await old.qmp.execute('query-status')).status, 'postmigrate');
  }
  await waitFor(
    () => existsSync(next.qmpPath),
    "the new tsvmm's QMP socket appears",
    () => next.stderr,
  );
  next.qmp = await QmpClient.connect(next.qmpPath);
  assert.is((await next.qmp.execute('query-status')).status, 'running');
}
