// Which errors end `tsvmm` with a one-line message and which status they give (src/cli/main.ts reads
// `exitStatus` from any SetupError; anything else is an internal error, 70, with its stack).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { KvmUnavailableError } from '../../kvm/kvm.js';
import { CheckpointError } from '../../cpr/file/format.js';
import { CprError } from '../../cpr/flows/reboot.js';
import { VmstateError } from '../../cpr/vmstate/vmstate.js';
import { GuestBuildError } from '../../examples/guests/build.js';
import { ElfError } from '../boot/elf.js';
import { FlatLoadError } from '../boot/flat.js';
import { LinuxBootError } from '../boot/linux/error.js';
import { MultibootError } from '../boot/multiboot.js';
import { BootError } from '../machine/boot.js';
import { DeviceSetupError } from '../machine/virtio-plan.js';
import { RamBackendError } from '../memory/backend.js';
import { QmpQueryError } from '../qmp/query.js';
import { QmpSpecError } from '../qmp/spec.js';
import { SysError } from '../sys/errno.js';
import { ExitStatus } from '../util/exit-status.js';
import { QemuOptsError } from '../util/qemu-opts.js';
import { SetupError } from '../util/setup-error.js';
import { UsageError } from './args.js';

const setupFailures: [string, Error][] = [
  ['KvmUnavailableError', new KvmUnavailableError('/dev/kvm', 'missing', 'does not exist')],
  ['RamBackendError', new RamBackendError('size 0')],
  ['BootError', new BootError('kernel: no such file')],
  ['SysError', new SysError('open', '/x', 2)],
  ['MultibootError', new MultibootError('bad checksum')],
  ['FlatLoadError', new FlatLoadError('unknown mode')],
  ['GuestBuildError', new GuestBuildError('hello', 'gcc', 'error')],
  ['DeviceSetupError', new DeviceSetupError('tap0: busy')],
  ['LinuxBootError', new LinuxBootError('no HdrS')],
  ['ElfError', new ElfError('no ELF magic')],
  ['CheckpointError', new CheckpointError('truncated')],
  ['CprError', new CprError('no channel')],
  ['QmpSpecError', new QmpSpecError('tcp:1', 'unsupported')],
  ['VmstateError', new VmstateError('too new')],
  ['QmpQueryError', new QmpQueryError('refused')],
];

test('setup errors: the image, /dev/kvm, RAM, device, checkpoint and QMP errors end tsvmm with status 4', () => {
  for (const [name, error] of setupFailures) {
    assert.is(error.name, name);
    assert.instance(error, SetupError, name);
    assert.is((error as SetupError).exitStatus, ExitStatus.setupFailed, name);
  }
  assert.is(ExitStatus.setupFailed, 4);
});

test('setup errors: a bad command line ends tsvmm with status 2', () => {
  const usage = new UsageError('-m: missing value');
  assert.instance(usage, SetupError);
  assert.is(usage.exitStatus, ExitStatus.usage);
  assert.is(usage.exitStatus, 2);
});

test('setup errors: anything else is an internal error (status 70), not a set-up failure', () => {
  for (const error of [new Error('bug'), new TypeError('x is undefined'), new QemuOptsError('-m', 'bad')]) {
    assert.not.instance(error, SetupError, error.name);
  }
});

test.run();
