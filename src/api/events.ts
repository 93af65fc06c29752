// The machine's QMP events as the library's: QEMU's name lower-cased ('STOP' → 'stop'), GUEST_PANICKED as 'panic',
// with QEMU's data as the one argument.
import type { MachineEvent } from '../machine/events.js';
import type { MachineEvents } from './options.js';

type Emitted = { [K in keyof MachineEvents]: [K, ...MachineEvents[K]] }[keyof MachineEvents];

export function libraryEvent(e: MachineEvent): Emitted {
  switch (e.event) {
    case 'STOP':
      return ['stop'];
    case 'RESUME':
      return ['resume'];
    case 'SHUTDOWN':
      return ['shutdown', e.data];
    case 'GUEST_PANICKED':
      return ['panic', e.data];
    case 'RESET':
      return ['reset', e.data];
    case 'POWERDOWN':
      return ['powerdown'];
    case 'SUSPEND':
      return ['suspend'];
    case 'WAKEUP':
      return ['wakeup'];
  }
}
