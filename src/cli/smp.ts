// `-smp`: how many vCPUs. Its own small module because tsvmm reads it first of all, to start the vCPU threads
// before it loads anything heavy.
import { parseQemuOpts } from '../util/qemu-opts.js';
import { UsageError } from './args.js';
import { MAX_VCPUS } from '../machine/config.js';

/** vCPUs from `-smp N` / `-smp cpus=N[,maxcpus=N][,sockets=…]` (1 when absent). */
export function parseSmp(text: string | undefined): number {
  if (text === undefined) return 1;
  const opts = parseQemuOpts(text, { option: '-smp', impliedKey: 'cpus' });
  opts.checkKnown(['cpus', 'maxcpus', 'sockets', 'dies', 'cores', 'threads']);
  const topology = ['sockets', 'dies', 'cores', 'threads']
    .filter((k) => opts.has(k))
    .reduce((n, k) => n * opts.uint(k), 1);
  const cpus = opts.has('cpus') ? opts.uint('cpus') : topology;
  if (cpus < 1 || cpus > MAX_VCPUS) throw new UsageError(`-smp: ${cpus} vCPUs is outside 1..${MAX_VCPUS}`);
  if (opts.has('maxcpus') && opts.uint('maxcpus') !== cpus) {
    throw new UsageError('-smp: maxcpus different from cpus needs CPU hotplug, which tsvmm does not have');
  }
  return cpus;
}
