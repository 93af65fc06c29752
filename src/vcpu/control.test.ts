// The pause/capture protocol between the main thread and the vCPU threads (control.ts), with worker threads
// standing in for vCPUs: a checkpoint's vCPU state must be saved after everything that can still raise an
// interrupt has stopped, so a parked vCPU saves its state only when asked, while it stays parked.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Worker, isMainThread, workerData } from 'node:worker_threads';
import { VcpuControl } from './control.js';

const VCPUS = 2;

if (!isMainThread) {
  // A vCPU: announces itself, parks at once (as after a kicked KVM_RUN), counts its saves in `saves[id]`.
  const { buffer, id, saves } = workerData as { buffer: SharedArrayBuffer; id: number; saves: SharedArrayBuffer };
  const control = new VcpuControl(VCPUS, buffer);
  const counts = new Int32Array(saves);
  control.announce(id, 1000 + id);
  while (!control.interrupted) Atomics.wait(new Int32Array(buffer), 0, 0, 5);
  control.park(id, () => {
    if (!control.captureWanted(id)) return;
    Atomics.add(counts, id, 1);
    control.captured(id, true);
  });
  control.exited(id);
} else {
  test('vcpu control: parked vCPUs save their state only once asked, each once, still parked; resume lets them go', async () => {
    const control = new VcpuControl(VCPUS);
    const saves = new Int32Array(new SharedArrayBuffer(4 * VCPUS));
    control.requestPause();
    const workers = Array.from(
      { length: VCPUS },
      (_, id) =>
        new Worker(new URL(import.meta.url), { workerData: { buffer: control.buffer, id, saves: saves.buffer } }),
    );
    const ended = workers.map((w) => new Promise((resolve) => w.on('exit', resolve)));
    assert.ok(await control.waitAllParked(10_000), 'both vCPUs parked');
    // Parked, not asked: nothing saved (the I/O thread may still be completing requests at this point).
    await new Promise((r) => setTimeout(r, 50));
    assert.equal([...saves], [0, 0], 'no vCPU saved its state on parking');

    const request = control.requestCapture();
    await control.waitCaptured(request, 10_000, false);
    assert.equal([...saves], [1, 1], 'each parked vCPU saved its state once, when asked');
    for (let v = 0; v < VCPUS; v++) assert.ok(control.capturedFor(v, request), `vCPU ${v} answered the request`);
    assert.is(control.parkedCount, VCPUS, 'and stayed parked');

    const second = control.requestCapture();
    await control.waitCaptured(second, 10_000, true);
    assert.equal([...saves], [2, 2], 'a second request, waited for synchronously, is answered too');

    control.resume();
    control.requestStop();
    await Promise.all(ended);
  });

  test('vcpu control: waiting for a capture ends when a vCPU has left its loop instead of answering', async () => {
    const control = new VcpuControl(1);
    control.announce(0, 1000);
    control.exited(0);
    const request = control.requestCapture();
    const started = Date.now();
    await control.waitCaptured(request, 10_000, false);
    assert.ok(Date.now() - started < 5_000, 'no wait for a vCPU that is gone');
    assert.is(control.capturedFor(0, request), false, 'its state is not captured: the caller reads it');
  });

  test.run();
}
