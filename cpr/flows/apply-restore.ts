// The last step of every load (a file in reboot mode, the state over a cpr-transfer channel or across a cpr-exec):
// apply a checked restore — functions adopted from an old process get their DMA addresses and interrupts back
// around it — and run the guest as it was saved, or leave it paused.
import type { Machine } from '../../src/machine/machine.js';
import { vfioHandover } from '../../src/machine/vfio-cpr.js';
import type { PhaseClock } from './timings.js';
import type { PreparedRestore } from './snapshot.js';

export function applyRestore(
  machine: Machine,
  prepared: PreparedRestore,
  clock: PhaseClock,
  stayPaused: boolean,
): void {
  const vfio = vfioHandover();
  if (vfio) clock.time('vfio-update-vaddr', () => vfio.beginAdoption());
  try {
    prepared.commit(clock);
  } finally {
    vfio?.endAdoption();
  }
  vfio?.completeAdoption();
  machine.markRestored();
  if (prepared.runState === 'running' && !stayPaused) clock.time('resume', () => machine.resume());
  else machine.setPausedState(prepared.runState === 'suspended' ? 'suspended' : 'paused');
}
