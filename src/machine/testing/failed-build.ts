// A child process for machine.test.ts: builds a machine (the guest image given as argument, a virtio device so
// that there is an I/O thread) with an I/O-thread start guard too short for any thread to meet, so the build fails
// after it started the vCPU threads and the I/O thread. It prints how the build ended and returns: the process then
// has to end by itself, which it cannot while a vCPU or I/O thread is left running.
import { Machine } from '../machine.js';
import { parseRunArgs } from '../../cli/args.js';
import { machineConfigFromArgs } from '../../cli/config.js';

const args = ['-m', '16M', '-smp', '2', '-kernel', process.argv[2], '-serial', 'null', '-device', 'virtio-rng-pci'];
try {
  const machine = await Machine.create(machineConfigFromArgs(parseRunArgs(args)), {
    log: () => {},
    ioThreadStartGuardMs: 1,
  });
  process.stdout.write('created\n');
  process.exitCode = (await machine.finish(0)) + 3;
} catch (e) {
  process.stdout.write(`failed: ${(e as Error).message}\n`);
}
