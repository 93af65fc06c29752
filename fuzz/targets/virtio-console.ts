// virtio-console (devices/virtio/console.ts) over guest RAM the fuzzer writes (support/virtio-ram.ts), with host
// input arriving between kicks.
import { newRecord } from '../../cpr/vmstate/vmstate.js';
import { VirtioConsole, virtioConsoleState } from '../../devices/virtio/console.js';
import { ramSeed, serveFromRam } from '../support/virtio-ram.js';

export const instrumented = ['devices/virtio/console.js', 'devices/virtio/queue.js'];

const newConsole = () => new VirtioConsole(newRecord(virtioConsoleState), { out: { write() {} } });
const INPUT = new TextEncoder().encode('host input, a line of it\n'.repeat(8));

export function fuzz(data: Uint8Array): void {
  const con = newConsole();
  serveFromRam({ backend: con, host: (control) => con.receive(INPUT.subarray(0, (control & 7) * 25)) }, data);
}

const text = (s: string) => new TextEncoder().encode(s);
export const seeds = (): Uint8Array[] => [
  ramSeed(newConsole(), 0x1c, [
    [0, [{ length: 64, write: true }]],
    [1, [{ data: text('hello from the guest\n') }]],
  ]),
  ramSeed(newConsole(), 0x3d, [
    [
      0,
      [
        { length: 8, write: true },
        { length: 100, write: true },
      ],
      true,
    ],
    [1, [{ data: text('two ') }, { data: text('buffers\n') }], true],
  ]),
];
