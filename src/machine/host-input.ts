// Host input into the guest: COM1's backend feeds the UART, taking input only as far as its FIFO has room; a virtio
// console's backend feeds its ring, which the I/O thread drains, as far as the ring has room.
import type { CharBackend } from '../chardev/index.js';
import type { MachineLock } from '../sync/lock.js';
import type { MachineDevice } from '../runtime/device-table.js';
import type { ConsoleInput } from './virtio-plan.js';

export function connectHostInput(
  chardevs: ReadonlyMap<string, CharBackend>,
  consoleInputs: readonly ConsoleInput[],
  devices: readonly MachineDevice[],
  lock: MachineLock,
): void {
  for (const input of consoleInputs) chardevs.get(input.chardev)?.setInputHandler((bytes) => input.ring.write(bytes));
  const serial = devices.find((d) => d.spec.kind === 'serial');
  if (!serial?.receive) return;
  const backend = chardevs.get(serial.spec.id)!;
  backend.setInputHandler((bytes) => lock.with(() => serial.receive!(bytes)));
}
