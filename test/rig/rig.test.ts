// The rig's parts that need no machine: the command and environment it hands to /init, QEMU's command line for
// each option, and /init itself (it must parse under busybox, the shell that runs it).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { findBusybox } from '../../src/images/busybox.js';
import { testIf } from '../support/skip.js';
import { rigInitScript } from './image.js';
import { commandScript, envScript, qemuArgs, VFIO_DEVICES } from './machine.js';

const sh = (script: string): { status: number | null; stdout: string } => {
  const r = spawnSync('sh', ['-c', script], { encoding: 'utf8' });
  return { status: r.status, stdout: r.stdout };
};

test('rig: several arguments run as they are, quoted; one argument is a shell command line', () => {
  const dir = mkdtempSync(join(tmpdir(), 'rig-test-'));
  try {
    const argv = commandScript(['printf', '%s|', "it's", 'a b', '$HOME', '`x`']);
    writeFileSync(join(dir, 'cmd'), argv);
    assert.is(sh(`. ${dir}/cmd`).stdout, "it's|a b|$HOME|`x`|");
    writeFileSync(join(dir, 'cmd'), commandScript(['echo one && echo two; exit 7']));
    assert.equal(sh(`. ${dir}/cmd`), { status: 7, stdout: 'one\ntwo\n' });
    assert.throws(() => commandScript([]), /no command/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('rig: the command gets the caller environment verbatim, its directory, and TSVMM_IN_RIG=1', () => {
  const env = { PLAIN: 'x', QUOTES: `a'b"c $d \`e\``, NEWLINE: 'l1\nl2', 'BAD-NAME': 'dropped', PWD: '/elsewhere' };
  const script = envScript(env, "/work/it's here");
  const r = sh(`${script}\nprintf '%s|' "$PLAIN" "$QUOTES" "$NEWLINE" "$RIG_CWD" "$TSVMM_IN_RIG" "\${PWD-unset}"`);
  assert.is(r.stdout.split('|').slice(0, 5).join('|'), `x|a'b"c $d \`e\`|l1\nl2|/work/it's here|1`);
  assert.not.match(script, /BAD-NAME|elsewhere/);
});

const base = {
  qemu: { tcgThreads: 'multi' as const, firmwareDirs: ['/fw/a', '/fw/b'] },
  bzImage: '/k/vmlinuz',
  initrd: '/r/initrd',
  shareDir: '/r/share',
  consoleLog: '/r/console.log',
  cpus: 2,
  memory: '8G',
  vfio: [],
  interactive: false,
  nvmeImage: '/r/nvme.img',
  transportArgs: ['-virtfs', 'local,path=/,mount_tag=hostroot'],
};
const after = (args: string[], flag: string): string[] => args.flatMap((a, i) => (a === flag ? [args[i + 1]] : []));

test('rig: QEMU emulates SVM (-cpu max) under TCG with the chosen threads, no default devices, no reboot', () => {
  const args = qemuArgs(base);
  assert.equal(after(args, '-accel'), ['tcg,thread=multi']);
  assert.equal(after(args, '-cpu'), ['max']);
  assert.equal(after(args, '-machine'), ['pc']);
  assert.equal(after(args, '-L'), ['/fw/a', '/fw/b']);
  for (const flag of ['-nodefaults', '-no-user-config', '-no-reboot']) assert.ok(args.includes(flag), flag);
  assert.equal(after(args, '-serial'), ['file:/r/console.log'], 'the kernel console goes to the log');
  assert.ok(
    args.includes('stdio,id=rigout') && args.includes('virtserialport,chardev=rigout,name=rig.out'),
    "the command's output comes through the rig.out port",
  );
  assert.ok(args.includes('local,path=/r/share,mount_tag=rigshare,security_model=none'));
  assert.equal(
    after(args, '-append')[0]
      .split(' ')
      .filter((w) => w.includes('iommu')),
    [],
  );
});

test('rig: --vfio makes a q35 with intel-iommu (interrupt remapping) before the devices, and intel_iommu=on', () => {
  const args = qemuArgs({ ...base, vfio: ['edu', 'nvme', 'e1000e'] });
  assert.equal(after(args, '-machine'), ['q35']);
  const devices = after(args, '-device');
  const iommu = devices.indexOf('intel-iommu,intremap=on');
  assert.ok(iommu >= 0 && iommu < devices.indexOf('edu'));
  assert.ok(devices.includes('nvme,drive=rignvme,serial=rig-nvme') && devices.includes('e1000e,netdev=rignet'));
  assert.ok(after(args, '-append')[0].split(' ').includes('intel_iommu=on'));
  assert.equal(Object.keys(VFIO_DEVICES), ['edu', 'nvme', 'e1000e']);
});

test('rig: an interactive shell puts the console and QEMU monitor on the terminal', () => {
  const args = qemuArgs({ ...base, interactive: true });
  assert.equal(after(args, '-serial'), ['mon:stdio']);
  assert.ok(args.includes('null,id=rigout'));
});

const busybox = findBusybox();
testIf(
  test,
  busybox ? null : 'no busybox (apt-get install busybox-static)',
  'rig: /init parses under busybox sh',
  () => {
    const dir = mkdtempSync(join(tmpdir(), 'rig-test-'));
    try {
      writeFileSync(join(dir, 'init'), rigInitScript());
      const r = spawnSync(busybox!, ['sh', '-n', join(dir, 'init')], { encoding: 'utf8' });
      assert.is(r.status, 0, r.stderr);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  },
);

test.run();
