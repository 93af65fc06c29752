// The guest images and the C reference program of bench/exits, all built at bench time (cached by content hash):
// outloop (examples/guests) with its loop count and port patched, the two-vCPU smp-outloop assembled from
// bench/exits/smp-outloop.S, and kvm-exit-loop compiled from bench/exits/kvm-exit-loop.c.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildGuest, patchOutloop, writeGuestVariant } from '../../examples/guests/build.js';
import { assembleFlat } from '../../test/support/asm.js';
import { compileC, repoRoot } from '../../test/support/cc.js';

/** Both guests are flat real-mode images for this address (outloop is also a boot sector). */
export const LOAD_ADDRESS = 0x7c00;

/** The outloop flat binary with `iterations` OUTs to `port`; returns its path under build/guests/. */
export async function outloopImage(iterations: number, port: number): Promise<string> {
  const built = await buildGuest('outloop');
  if (built.loadAddress !== LOAD_ADDRESS)
    throw new Error(`outloop loads at 0x${built.loadAddress?.toString(16)}, expected 0x7c00`);
  return writeGuestVariant('outloop-bench', patchOutloop(readFileSync(built.path), { iterations, port }));
}

// smp-outloop's patchable fields (see the comment at the top of smp-outloop.S).
const SMP_MAGIC_OFFSET = 4;
const SMP_ITERATIONS_OFFSET = 8;
const SMP_PORT_OFFSET = 12;
const SMP_APS_OFFSET = 15;

/** smp-outloop with `iterations` OUTs to `port` per vCPU, on the boot vCPU only or on vCPUs 0 and 1. */
export async function smpOutloopImage(iterations: number, port: number, vcpus: 1 | 2): Promise<string> {
  const source = readFileSync(join(repoRoot, 'bench', 'exits', 'smp-outloop.S'), 'utf8');
  const image = new Uint8Array(readFileSync(assembleFlat(source, LOAD_ADDRESS)));
  if (new TextDecoder().decode(image.subarray(SMP_MAGIC_OFFSET, SMP_MAGIC_OFFSET + 4)) !== 'OUT2') {
    throw new Error('smp-outloop: no "OUT2" magic at offset 4');
  }
  const dv = new DataView(image.buffer);
  dv.setUint32(SMP_ITERATIONS_OFFSET, iterations, true);
  dv.setUint16(SMP_PORT_OFFSET, port, true);
  dv.setUint8(SMP_APS_OFFSET, vcpus - 1);
  return writeGuestVariant('smp-outloop-bench', image);
}

/** The C reference VMM (-O2, as a C VMM would ship). */
export function cReference(): string {
  const source = readFileSync(join(repoRoot, 'bench', 'exits', 'kvm-exit-loop.c'), 'utf8');
  return compileC(source, { name: 'kvm-exit-loop', flags: ['-O2', '-Wall', '-Werror', '-pthread'] });
}

/** What kvm-exit-loop prints. */
export interface CResult {
  cpus: { count: number; firstNs: number; lastNs: number }[];
  exitStatus: number;
}
