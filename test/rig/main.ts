// `npm run rig -- [options] [COMMAND…]`: one command, or a shell, inside the rig's machine (test/rig/README.md).
// Exit status: the command's own; 124 when --timeout ends it, 125 when the machine died without one, 4 when the
// rig cannot be set up (no QEMU, no kernel), 2 for a bad command line.
import { parseArgs } from 'node:util';
import { RigSetupError } from './debian.js';
import { runInRig, VFIO_DEVICES, type VfioDeviceName } from './machine.js';

const USAGE = `usage: npm run rig -- [options] [COMMAND [ARG…]]
Runs COMMAND as root in the current directory inside a QEMU machine (TCG, emulated AMD SVM) whose Linux has a
real /dev/kvm, with this host's files visible (writes go to a throw-away overlay). One argument is a shell command
line ('npm test && echo ok'); several are run as they are. Without a command: an interactive shell (Ctrl-a x quits).
  --cpus N          vCPUs (default 2)
  -m, --memory SIZE guest RAM in QEMU's spelling (default 8G)
  --vfio LIST       q35 with an emulated intel-iommu, and these devices bound to vfio-pci inside:
                    ${Object.entries(VFIO_DEVICES)
                      .map(([n, d]) => `${n} (${d.id}: ${d.what})`)
                      .join(',\n                    ')}
  --timeout SECONDS end the machine after this long (status 124)
exit status: the command's; 124 timed out, 125 the machine died, 4 the rig could not be set up, 2 bad usage.`;

function usage(message: string): never {
  process.stderr.write(`rig: ${message}\n${USAGE}\n`);
  process.exit(2);
}

/** The command line, or the usage message and exit on an unknown or malformed option. */
function parseCommandLine(argv: string[]) {
  try {
    return parseArgs({
      args: argv,
      allowPositionals: true,
      strict: true,
      options: {
        cpus: { type: 'string' },
        memory: { type: 'string', short: 'm' },
        vfio: { type: 'string' },
        timeout: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (e) {
    usage((e as Error).message);
  }
}

async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommandLine(argv);
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const cpus = values.cpus === undefined ? undefined : Number(values.cpus);
  if (cpus !== undefined && !(Number.isInteger(cpus) && cpus >= 1 && cpus <= 64))
    usage(`--cpus ${values.cpus}: want 1..64`);
  if (values.memory !== undefined && !/^\d+[MG]?$/i.test(values.memory))
    usage(`--memory ${values.memory}: want e.g. 8G or 4096M`);
  const timeout = values.timeout === undefined ? undefined : Number(values.timeout);
  if (timeout !== undefined && !(timeout > 0)) usage(`--timeout ${values.timeout}: want a positive number of seconds`);
  const vfio = (values.vfio ?? '').split(',').filter(Boolean);
  for (const name of vfio)
    if (!(name in VFIO_DEVICES)) usage(`--vfio ${name}: known devices are ${Object.keys(VFIO_DEVICES).join(', ')}`);

  try {
    const result = await runInRig({
      command: positionals.length ? positionals : null,
      cpus,
      memory: values.memory,
      vfio: vfio as VfioDeviceName[],
      timeoutMs: timeout === undefined ? undefined : timeout * 1000,
    });
    if (result.timedOut) return 124;
    return result.status ?? 125;
  } catch (e) {
    if (e instanceof RigSetupError) {
      process.stderr.write(`rig: ${e.message}\n`);
      return 4;
    }
    throw e;
  }
}

process.exitCode = await main(process.argv.slice(2));
