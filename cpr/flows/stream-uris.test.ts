// Reboot mode over streams, as libvirt drives QEMU: migrate to exec:COMMAND and to fd:NAME (an fd passed with
// getfd), loaded by a new tsvmm through -incoming exec:COMMAND and -incoming fd:N. The counter guest goes on from
// where it was each time; a bad URI, an unknown fd name, a command that fails or writes nothing is a clear error
// and the VM runs on.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type net from 'node:net';
import { closeSync, existsSync, openSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { testIf } from '../../test/support/skip.js';
import { startVm, scratchDir, removeDir, type VmProcess } from '../../test/support/vm-process.js';
import { QmpClientError } from '../../test/support/qmp-client.js';
import { HANG_GUARD_MS } from '../../test/support/hang-guard.js';
import { counterVmArgs, shmRamFile } from '../../test/support/counter-vm.js';
import { kvmMissing } from '../../kvm/testing/test-guest.js';
import { toolchainUnavailable, COUNTER_STATE_ADDR } from '../../examples/guests/build.js';
import { sendWithFds } from '../../src/sys/socket.js';

const skip =
  kvmMissing() ?? (await toolchainUnavailable()) ?? (existsSync('/dev/shm') ? null : 'no /dev/shm on this host');
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Waits until `read()` reaches `value`; the time limit only guards against a hang. */
async function until(read: () => bigint, value: bigint, what: string): Promise<bigint> {
  const deadline = Date.now() + HANG_GUARD_MS;
  for (;;) {
    const v = read();
    if (v >= value) return v;
    if (Date.now() > deadline) throw new Error(`${what} stayed at ${v}, wanted ${value}`);
    await sleep(20);
  }
}

async function migrationEnd(vm: VmProcess): Promise<Record<string, unknown>> {
  for (;;) {
    const info = await vm.qmp.execute('query-migrate');
    if (info.status === 'completed' || info.status === 'failed') return info;
    await sleep(20);
  }
}

async function refused(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    assert.instance(e, QmpClientError);
    return (e as Error).message;
  }
  assert.unreachable('expected a QMP error');
  return '';
}

/** Passes `fd` to tsvmm's QMP as libvirt does: attached (SCM_RIGHTS) to the getfd command itself. */
async function getfd(vm: VmProcess, fd: number, fdname: string): Promise<void> {
  const socket = (vm.qmp as unknown as { socket: net.Socket }).socket;
  const sock = (socket as unknown as { _handle: { fd: number } })._handle.fd;
  sendWithFds(sock, [Buffer.from(' ')], [fd]); // qemu.qmp's send_fd_scm: the fd with one space byte
  await vm.qmp.execute('getfd', { fdname });
}

testIf(
  test,
  skip,
  'cpr reboot over streams: migrate exec:cat > F, -incoming exec:cat F, migrate fd: (getfd), -incoming fd:0 — the counter goes on; bad URIs, unknown fds and failing commands are refused with the VM running',
  async () => {
    const dir = scratchDir();
    const ramFile = shmRamFile(dir);
    const vms: VmProcess[] = [];
    const counter = () => {
      try {
        return readFileSync(ramFile).readBigUInt64LE(COUNTER_STATE_ADDR);
      } catch {
        return 0n;
      }
    };
    const reboot = async (vm: VmProcess) => {
      await vm.qmp.execute('migrate-set-parameters', { mode: 'cpr-reboot' });
      await vm.qmp.execute('migrate-set-capabilities', {
        capabilities: [{ capability: 'x-ignore-shared', state: true }],
      });
    };
    try {
      const args = await counterVmArgs(dir, 'shm', ['-serial', 'null']);
      const old = await startVm(args, { dir, name: 'old' });
      vms.push(old);
      await until(counter, 100n, 'the counter');
      await reboot(old);

      // Refusals: at once for a bad URI or an unknown fd name; through query-migrate for a command that fails.
      assert.match(await refused(old.qmp.execute('migrate', { uri: 'tcp:0:4444' })), 'is not supported');
      assert.match(
        await refused(old.qmp.execute('migrate', { uri: 'fd:nope' })),
        "File descriptor named 'nope' has not been found",
      );
      for (const [command, why] of [
        ['exit 3', 'exited with status 3'],
        [`cat > '${join(dir, 'no-such-dir', 'f')}'`, 'the command exited with status'],
      ]) {
        await old.qmp.execute('migrate', { uri: `exec:${command}` });
        const info = await migrationEnd(old);
        assert.is(info.status, 'failed', command);
        assert.match(String(info['error-desc']), why);
        assert.equal(await old.qmp.execute('query-status'), { running: true, status: 'running' });
        const c = counter();
        await until(counter, c + 20n, `the counter after a failed exec:${command}`);
      }

      // exec: out, exec: in.
      const a = join(dir, 'a.state');
      await old.qmp.execute('migrate', { uri: `exec:cat > '${a}'` });
      assert.is((await migrationEnd(old)).status, 'completed', old.stderr);
      assert.is((await old.qmp.execute('query-status')).status, 'postmigrate');
      const savedA = counter();
      await old.qmp.execute('quit');
      assert.is(await old.exited, 0);

      const mid = await startVm([...args, '-incoming', `exec:cat '${a}'`], { dir, name: 'mid' });
      vms.push(mid);
      await until(counter, savedA + 100n, 'the counter after -incoming exec:');
      assert.is((await mid.qmp.execute('query-migrate')).status, 'completed');

      // fd: out (a file opened here, passed with getfd), fd:0 in (a pipe on the new tsvmm's stdin).
      await reboot(mid);
      const b = join(dir, 'b.state');
      const fd = openSync(b, 'w', 0o600);
      await getfd(mid, fd, 'mig');
      closeSync(fd);
      await mid.qmp.execute('migrate', { uri: 'fd:mig' });
      assert.is((await migrationEnd(mid)).status, 'completed', mid.stderr);
      const savedB = counter();
      await mid.qmp.execute('quit');
      assert.is(await mid.exited, 0);

      const next = await startVm([...args, '-incoming', 'fd:0'], { dir, name: 'next', stdin: true });
      vms.push(next);
      next.child.stdin!.end(readFileSync(b));
      await until(counter, savedB + 100n, 'the counter after -incoming fd:0');
      await next.qmp.execute('quit');
      assert.is(await next.exited, 0);
    } finally {
      for (const vm of vms) await vm.dispose();
      rmSync(ramFile, { force: true });
      removeDir(dir);
    }
  },
);

test.run();
