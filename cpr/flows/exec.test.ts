// cpr-exec end to end, as a user drives it: a real tsvmm under the real /dev/kvm is told over QMP (QEMU 10.2's
// spelling: mode cpr-exec, cpr-exec-command, migrate file:) to exec a new tsvmm image in its own process. The guest
// goes on there with the same pid, the same RAM pages (the memfd is kept, not copied) and the same QMP socket. Also:
// a failing exec (the old image keeps the guest), the parameter checks, and a stray TSVMM_CPR_EXEC_STATE given to a
// fresh tsvmm (refused before anything is touched — natively, no KVM needed).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn } from 'node:child_process';
import {
  closeSync,
  existsSync,
  openSync,
  readFileSync,
  readdirSync,
  readlinkSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { testIf } from '../../test/support/skip.js';
import { startVm, scratchDir, removeDir, type VmProcess } from '../../test/support/vm-process.js';
import { QmpClient, QmpClientError } from '../../test/support/qmp-client.js';
import { HANG_GUARD_MS } from '../../test/support/hang-guard.js';
import { cliPath, runTsvmm } from '../../test/support/tsvmm.js';
import { kvmMissing } from '../../kvm/testing/test-guest.js';
import { buildGuest, toolchainUnavailable, COUNTER_STATE_ADDR } from '../../examples/guests/build.js';
import { checkExecCommand, CPR_EXEC_ENV } from './exec.js';
import { memfdCreate, write } from '../../src/sys/libc.js';

const skip = kvmMissing() ?? (await toolchainUnavailable());
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const RAM = '64M';
const STATE_PAGE_END = COUNTER_STATE_ADDR + 0x1000;

async function counterAt(qmp: QmpClient, dir: string): Promise<bigint> {
  const file = join(dir, `ram-${Date.now()}-${Math.random()}.bin`);
  await qmp.execute('pmemsave', { val: 0, size: STATE_PAGE_END, filename: file });
  const bytes = readFileSync(file);
  rmSync(file);
  return bytes.readBigUInt64LE(COUNTER_STATE_ADDR);
}

async function until(read: () => Promise<bigint>, value: bigint, what: string): Promise<bigint> {
  const deadline = Date.now() + HANG_GUARD_MS;
  for (;;) {
    const v = await read();
    if (v >= value) return v;
    if (Date.now() > deadline) throw new Error(`${what} stayed at ${v}, wanted ${value}`);
    await sleep(20);
  }
}

/** The process's open fds: number → link text, and whether it is close-on-exec (from fdinfo's flags). */
function fdTable(pid: number): Map<number, { link: string; cloexec: boolean; ino: number }> {
  const out = new Map<number, { link: string; cloexec: boolean; ino: number }>();
  for (const entry of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const link = readlinkSync(`/proc/${pid}/fd/${entry}`);
      const flags = /flags:\s*([0-7]+)/.exec(readFileSync(`/proc/${pid}/fdinfo/${entry}`, 'utf8'))?.[1] ?? '0';
      out.set(Number(entry), {
        link,
        cloexec: (Number.parseInt(flags, 8) & 0o2000000) !== 0,
        ino: statSync(`/proc/${pid}/fd/${entry}`).ino,
      });
    } catch {
      /* closed meanwhile */
    }
  }
  return out;
}

const ramMemfd = (pid: number) => [...fdTable(pid).values()].filter((f) => f.link.startsWith('/memfd:tsvmm-ram'));
const kvmVmFds = (pid: number) => [...fdTable(pid).values()].filter((f) => f.link === 'anon_inode:kvm-vm');
/**
 * The inodes of the listening unix sockets among the process's fds (/proc/net/unix: flags __SO_ACCEPTCON). Its
 * path there is the one bound (tsvmm binds in a private directory and renames), so the fds are matched instead.
 */
function listeningSockets(pid: number): string[] {
  const listening = new Set<string>();
  for (const line of readFileSync('/proc/net/unix', 'utf8').split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f[3] === '00010000') listening.add(f[6]);
  }
  return [...fdTable(pid).values()]
    .map((f) => /^socket:\[(\d+)\]$/.exec(f.link)?.[1])
    .filter((ino): ino is string => ino !== undefined && listening.has(ino))
    .sort();
}
const cmdline = (pid: number) => readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');

function counterArgs(guest: string, backend: 'memfd' | 'private'): string[] {
  const object =
    backend === 'memfd'
      ? `memory-backend-memfd,id=ram0,size=${RAM},share=on`
      : `memory-backend-ram,id=ram0,size=${RAM}`;
  return ['-m', RAM, '-kernel', guest, '-object', object, '-machine', 'memory-backend=ram0', '-serial', 'stdio'];
}

/** The new image's argv: this tsvmm again, the same options, the same QMP socket, -incoming file:STATE. */
const execCommand = (args: string[], vm: VmProcess, state: string) => [
  process.execPath,
  cliPath,
  'run',
  ...args,
  '-qmp',
  `unix:${vm.qmpPath},server=on,wait=off`,
  '-incoming',
  `file:${state}`,
];

/**
 * migrate in mode cpr-exec; waits for MIGRATION completed, then for the old image's QMP connection to close (the
 * exec), and reconnects to the same socket path, now served by the new image.
 */
async function cprExec(vm: VmProcess, command: string[], state: string): Promise<void> {
  await vm.qmp.execute('migrate-set-parameters', { mode: 'cpr-exec', 'cpr-exec-command': command });
  await vm.qmp.execute('migrate', { uri: `file:${state}` });
  const done = await vm.qmp.waitEvent(
    'MIGRATION',
    HANG_GUARD_MS,
    (e) => e.data?.status === 'completed' || e.data?.status === 'failed',
  );
  assert.is(done.data?.status, 'completed', vm.stderr);
  const old = vm.qmp;
  const deadline = Date.now() + HANG_GUARD_MS;
  // The exec closes every client connection (the listening socket itself stays).
  while (!old.closed) {
    if (Date.now() > deadline) assert.unreachable(`the old image did not exec:\n${vm.stderr}`);
    await sleep(5);
  }
  vm.qmp = await QmpClient.connect(vm.qmpPath);
}

testIf(
  test,
  skip,
  "cpr-exec: the counter guest is exec'd into a new tsvmm image twice — same pid, same memfd RAM (not copied), same QMP socket, the counter and COM1 go on",
  async () => {
    const dir = scratchDir('tsvmm-cpr-exec-');
    let vm: VmProcess | undefined;
    try {
      const guest = (await buildGuest('counter')).path;
      const args = counterArgs(guest, 'memfd');
      vm = await startVm(args, { dir, name: 'vm' });
      const pid = vm.child.pid!;
      const [ram] = ramMemfd(pid);
      const qmpSocket = listeningSockets(pid);
      assert.is(qmpSocket.length, 1, 'one listening socket: QMP');
      assert.ok(ram, 'the RAM memfd is open');
      const initial = await vm.qmp.execute('query-migrate-parameters');
      assert.is(initial.mode, 'normal');
      assert.equal(initial['cpr-exec-command'], [], 'QEMU 10.2 reports the unset command as []');
      let counted = await until(() => counterAt(vm!.qmp, dir), 150n, 'the counter before the first exec');
      for (const round of [1, 2]) {
        const state = join(dir, `vm-${round}.state`);
        const command = execCommand(args, vm, state);
        await vm.qmp.execute('migrate-set-parameters', { mode: 'cpr-exec', 'cpr-exec-command': command });
        const params = await vm.qmp.execute('query-migrate-parameters');
        assert.is(params.mode, 'cpr-exec');
        assert.equal(params['cpr-exec-command'], command);
        await cprExec(vm, command, state);

        // The same process, now the new image (its command line has -incoming), with the very same RAM pages.
        assert.is(vm.child.exitCode, null, vm.stderr);
        assert.is(vm.child.pid, pid);
        assert.ok(cmdline(pid).includes(`file:${state}`), `the process runs the new image: ${cmdline(pid).join(' ')}`);
        const now = ramMemfd(pid);
        assert.is(now.length, 1, 'one RAM memfd');
        assert.is(now[0].ino, ram.ino, 'the RAM memfd is the one the first image created');
        assert.is(kvmVmFds(pid).length, 1, "the old image's KVM VM fd was closed by the exec");
        assert.equal(listeningSockets(pid), qmpSocket, 'the new image serves the very QMP socket the first one bound');
        assert.not.ok(
          [...fdTable(pid).values()].some((f) => f.link.includes('tsvmm-cpr-exec-state')),
          'the state memfd is closed',
        );
        assert.ok(statSync(state).size < 1 << 20, 'RAM stays out of the checkpoint');

        assert.equal(await vm.qmp.execute('query-status'), { running: true, status: 'running' });
        const info = await vm.qmp.execute('query-migrate');
        assert.is(info.status, 'completed');
        assert.is((await vm.qmp.execute('query-migrate-parameters')).mode, 'cpr-exec');
        const timings = await vm.qmp.execute('x-query-cpr-timings');
        const has = (process: string, phase: string) =>
          timings.marks.some((m: { phase: string; process: string }) => m.process === process && m.phase === phase);
        assert.ok(has('old', 'stop-vcpus') && has('old', 'exec') && has('new', 'map-ram') && has('new', 'resume'));
        assert.type(timings['pause-us'], 'number');
        const after = await counterAt(vm.qmp, dir);
        assert.ok(after >= counted, `the counter carried over (${counted} → ${after})`);
        counted = await until(() => counterAt(vm!.qmp, dir), after + 150n, `the counter after exec ${round}`);
      }
      // COM1 (stdout, kept across both execs) reads as one run: every hundred once, in order.
      const counts = [...vm.stdout.matchAll(/counter: (\d+)\r?\n/g)].map((m) => BigInt(m[1]));
      assert.ok(counts.length >= 3, vm.stdout);
      assert.equal(
        counts,
        counts.map((_, i) => BigInt(i + 1) * 100n),
        'every hundred once, in order',
      );
      await vm.qmp.execute('quit');
      assert.is(await vm.exited, 0, vm.stderr);
      assert.not.ok(existsSync(vm.qmpPath), 'quit removes the QMP socket');
    } finally {
      await vm?.dispose();
      removeDir(dir);
    }
  },
);

testIf(
  test,
  skip,
  'cpr-exec refusals and a failed exec: bad parameters and anonymous RAM are QMP errors; an exec that fails leaves the guest running in the old image, MIGRATION failed, every fd as it was',
  async () => {
    const dir = scratchDir('tsvmm-cpr-exec-fail-');
    const vms: VmProcess[] = [];
    try {
      const guest = (await buildGuest('counter')).path;
      // Anonymous (private) RAM cannot be kept across an exec.
      const anon = await startVm(counterArgs(guest, 'private'), { dir, name: 'anon' });
      vms.push(anon);
      const refuse = async (vm: VmProcess, command: string, args: Record<string, unknown>, pattern: RegExp) => {
        const e = await vm.qmp.execute(command, args).catch((x: unknown) => x);
        assert.instance(e, QmpClientError, `${command} ${JSON.stringify(args)} should fail`);
        assert.match((e as QmpClientError).desc, pattern);
      };
      await refuse(
        anon,
        'migrate-set-parameters',
        { mode: 'cpr-bogus' },
        /Parameter 'mode' does not accept value 'cpr-bogus'/,
      );
      await refuse(
        anon,
        'migrate-set-parameters',
        { 'cpr-exec-command': ['tsvmm', 'run'] },
        /Parameter 'cpr-exec-command' expects an absolute path/,
      );
      await anon.qmp.execute('migrate-set-parameters', { mode: 'cpr-exec' });
      await refuse(
        anon,
        'migrate',
        { uri: `file:${join(dir, 'x')}` },
        /^cpr-exec mode requires setting cpr-exec-command$/,
      );
      await anon.qmp.execute('migrate-set-parameters', { 'cpr-exec-command': [process.execPath, cliPath] });
      await refuse(
        anon,
        'migrate',
        { uri: `file:${join(dir, 'x')}` },
        /^Memory region ram0 is not compatible with CPR\. share=on is required for memory-backend objects/,
      );
      assert.is((await anon.qmp.execute('query-status')).status, 'running');
      assert.not.ok(existsSync(join(dir, 'x')));
      await anon.qmp.execute('quit');
      assert.is(await anon.exited, 0);

      const args = counterArgs(guest, 'memfd');
      const vm = await startVm(args, { dir, name: 'vm' });
      vms.push(vm);
      const pid = vm.child.pid!;
      await until(() => counterAt(vm.qmp, dir), 50n, 'the counter');
      // A program that is not there: refused by migrate itself, before the guest stops.
      await vm.qmp.execute('migrate-set-parameters', { mode: 'cpr-exec', 'cpr-exec-command': [join(dir, 'nope')] });
      await refuse(vm, 'migrate', { uri: `file:${join(dir, 'x')}` }, /cannot execute '.*\/nope': ENOENT/);
      assert.equal(await vm.qmp.execute('query-migrate'), {});

      // A program execve refuses (executable, but no ELF and no #!): the save completes, the exec fails, and the old
      // image takes the guest back — as QEMU, MIGRATION goes completed → failed.
      const notProgram = join(dir, 'not-a-program');
      writeFileSync(notProgram, 'just text\n', { mode: 0o755 });
      const before = fdTable(pid);
      await vm.qmp.execute('migrate-set-parameters', { 'cpr-exec-command': [notProgram, '-incoming', 'defer'] });
      await vm.qmp.execute('migrate', { uri: `file:${join(dir, 'failed.state')}` });
      await vm.qmp.waitEvent('MIGRATION', HANG_GUARD_MS, (e) => e.data?.status === 'failed');
      const statuses = vm.qmp.events.filter((e) => e.event === 'MIGRATION').map((e) => e.data?.status);
      assert.equal(statuses, ['setup', 'active', 'completed', 'failed']);
      const info = await vm.qmp.execute('query-migrate');
      assert.is(info.status, 'failed');
      assert.match(info['error-desc'], /^execve .*not-a-program failed: ENOEXEC/);
      assert.equal(await vm.qmp.execute('query-status'), { running: true, status: 'running' });
      assert.is(vm.child.pid, pid);
      assert.not.ok(cmdline(pid).includes('defer'), 'still the first image');
      // Every fd is back as it was: the same fds open with the same close-on-exec flags, the state memfd gone.
      const after = fdTable(pid);
      for (const [fd, f] of before) {
        if (!after.has(fd) || f.link.startsWith('pipe:') || f.link.startsWith('socket:')) continue;
        assert.is(after.get(fd)!.cloexec, f.cloexec, `fd ${fd} (${f.link}) close-on-exec as before`);
      }
      assert.not.ok([...after.values()].some((f) => f.link.includes('tsvmm-cpr-exec-state')));
      const counted = await counterAt(vm.qmp, dir);
      await until(() => counterAt(vm.qmp, dir), counted + 100n, 'the counter after the failed exec');

      // And a good command still works afterwards — here with -incoming defer, as QEMU's second example: the new
      // image waits in inmigrate (mode cpr-exec, the kept RAM mapped) until migrate-incoming names the file.
      const good = join(dir, 'good.state');
      const deferred = [
        ...execCommand(args, vm, good).filter((a) => a !== '-incoming' && a !== `file:${good}`),
        '-incoming',
        'defer',
      ];
      await cprExec(vm, deferred, good);
      assert.is(vm.child.pid, pid);
      assert.is((await vm.qmp.execute('query-status')).status, 'inmigrate');
      assert.is((await vm.qmp.execute('query-migrate-parameters')).mode, 'cpr-exec');
      await vm.qmp.execute('migrate-incoming', { uri: `file:${good}` });
      assert.equal(await vm.qmp.execute('query-status'), { running: true, status: 'running' });
      const resumed = await counterAt(vm.qmp, dir);
      assert.ok(resumed >= counted, `the counter carried over (${counted} → ${resumed})`);
      await until(() => counterAt(vm.qmp, dir), resumed + 100n, 'the counter after the deferred load');
      await vm.qmp.execute('quit');
      assert.is(await vm.exited, 0, vm.stderr);
    } finally {
      for (const vm of vms) await vm.dispose();
      removeDir(dir);
    }
  },
);

// ---- natively: what a new image accepts ------------------------------------------------------------------------

test('cpr-exec-command: the program must be an absolute path; [] unsets; strings without NUL', () => {
  checkExecCommand([]);
  checkExecCommand(['/usr/bin/tsvmm', 'run', '-incoming', 'defer']);
  for (const bad of [['tsvmm'], ['./tsvmm'], [''], ['/bin/x', 'a\0b']]) {
    assert.throws(() => checkExecCommand(bad), /Parameter 'cpr-exec-command' expects/);
  }
});

/** Runs `tsvmm run -incoming defer` with TSVMM_CPR_EXEC_STATE=value and, optionally, an extra fd 3. */
function runWithState(value: string, fd3?: number): Promise<{ status: number | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [cliPath, 'run', '-m', '16M', '-incoming', 'defer', '-serial', 'null'], {
      stdio: ['ignore', 'ignore', 'pipe', ...(fd3 === undefined ? [] : [fd3])],
      env: { ...process.env, [CPR_EXEC_ENV]: value, TSVMM_KVM_DEVICE: '/nonexistent/kvm' },
    });
    let stderr = '';
    child.stderr!.on('data', (d) => {
      stderr += d;
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), HANG_GUARD_MS);
    child.on('error', reject);
    child.on('close', (status) => {
      clearTimeout(timer);
      resolve({ status, stderr });
    });
  });
}

test('cpr-exec: a stray TSVMM_CPR_EXEC_STATE given to a fresh tsvmm is refused in one line (status 4) before anything is opened or closed', async () => {
  const dir = scratchDir('tsvmm-cpr-exec-env-');
  try {
    const planted = join(dir, 'planted');
    writeFileSync(planted, 'do not touch\n');
    const fileFd = openSync(planted, 'r+');
    // A memfd with the state's name and a well-formed state, written by another process (this one).
    const memfd = memfdCreate('tsvmm-cpr-exec-state', 0);
    const fake = Buffer.from(
      JSON.stringify({ magic: 'tsvmm cpr-exec state', version: 1, pid: process.pid, fds: [], ram: {}, marks: [] }),
    );
    write(memfd, fake);
    const garbageMemfd = memfdCreate('tsvmm-cpr-exec-state', 0);
    write(garbageMemfd, Buffer.from('{"magic": 1'));
    try {
      const cases: Array<[string, number | undefined, RegExp]> = [
        ['', undefined, /is not a file descriptor number/],
        ['3; rm -rf /', undefined, /is not a file descriptor number/],
        ['-1', undefined, /is not a file descriptor number/],
        ['1', undefined, /names stdin, stdout or stderr/],
        ['977', undefined, /names fd 977, which is not open/],
        ['3', fileFd, /names fd 3, which is .*planted, not a cpr-exec state memfd/],
        ['3', garbageMemfd, /does not hold JSON/],
        ['3', memfd, new RegExp(`written by process ${process.pid}, this is \\d+ \\(an exec keeps the pid\\)`)],
      ];
      for (const [value, fd, pattern] of cases) {
        const r = await runWithState(value, fd);
        assert.is(r.status, 4, `${JSON.stringify(value)}: ${r.stderr}`);
        const lines = r.stderr.trim().split('\n');
        assert.is(lines.length, 1, r.stderr);
        assert.match(lines[0], /^tsvmm: cpr-exec: TSVMM_CPR_EXEC_STATE=/);
        assert.match(lines[0], pattern);
        assert.match(lines[0], /unset TSVMM_CPR_EXEC_STATE to start normally/);
        assert.not.match(lines[0], /kvm/i, 'refused before /dev/kvm is opened');
      }
      assert.is(readFileSync(planted, 'utf8'), 'do not touch\n', 'the planted file is untouched');
    } finally {
      closeSync(fileFd);
      closeSync(memfd);
      closeSync(garbageMemfd);
    }
    // Without the variable the same command line gets as far as /dev/kvm.
    const plain = await runTsvmm(['run', '-m', '16M', '-incoming', 'defer', '-serial', 'null'], {
      env: { TSVMM_KVM_DEVICE: '/nonexistent/kvm' },
    });
    assert.is(plain.status, 4);
    assert.match(plain.stderr, /nonexistent\/kvm/);
  } finally {
    removeDir(dir);
  }
});

test.run();
