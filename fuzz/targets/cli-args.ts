// The command line (src/cli/args.ts, config.ts): any argv — the input split at NUL bytes — either becomes a machine
// configuration or is refused with a one-line SetupError (UsageError), as `tsvmm run` prints it.
import { parseRunArgs } from '../../src/cli/args.js';
import { machineConfigFromArgs } from '../../src/cli/config.js';
import { SetupError } from '../../src/util/setup-error.js';
import { refusedOnlyWith } from '../support/contract.js';

export const instrumented = [
  'src/cli/args.js',
  'src/cli/config.js',
  'src/cli/smp.js',
  'src/util/qemu-opts.js',
  'src/chardev/spec.js',
];

export function fuzz(data: Uint8Array): void {
  const argv = new TextDecoder().decode(data).split('\0');
  refusedOnlyWith([SetupError], () => machineConfigFromArgs(parseRunArgs(argv)));
}

const argv = (...words: string[]) => new TextEncoder().encode(words.join('\0'));
export const seeds = (): Uint8Array[] => [
  argv('-m', '256M', '-smp', '2', '-kernel', 'bzImage', '-append', 'console=ttyS0', '-serial', 'stdio'),
  argv('-machine', 'q35,accel=kvm', '-m', 'size=1G,slots=1,maxmem=2G', '-cpu', 'host', '-nographic', '-no-reboot'),
  argv(
    '-object',
    'memory-backend-file,id=ram0,size=512M,mem-path=/dev/shm/vm0,share=on',
    '-machine',
    'memory-backend=ram0',
    '-m',
    '512M',
  ),
  argv(
    '-drive',
    'file=disk.img,if=none,id=d0,format=raw',
    '-device',
    'virtio-blk-pci,drive=d0,serial=abc',
    '-netdev',
    'tap,id=n0,ifname=tap0,script=no,downscript=no',
    '-device',
    'virtio-net-pci,netdev=n0,mac=52:54:00:12:34:56',
  ),
  argv(
    '-chardev',
    'socket,id=c0,path=/tmp/s,server=on,wait=off',
    '-serial',
    'chardev:c0',
    '-debugcon',
    'file:dbg.log',
    '-device',
    'isa-debug-exit,iobase=0xf4,iosize=0x04',
    '-device',
    'pvpanic',
  ),
  argv(
    '-device',
    'loader,file=guest.elf,cpu-num=0',
    '-device',
    'vfio-pci,host=0000:01:00.0',
    '-qmp',
    'unix:/tmp/q,server=on,wait=off',
    '--timeout=30',
    '-action',
    'panic=exit-failure',
  ),
];
