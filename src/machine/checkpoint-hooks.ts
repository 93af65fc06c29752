// What checkpoint/restart (cpr/flows) reaches inside the machine: its parts, and the vCPU states the vCPU threads
// save themselves while parking for a checkpoint.
import type { Vm } from '../../kvm/vm.js';
import type { Vcpu } from '../../kvm/vcpu.js';
import type { MachineRam } from '../memory/config.js';
import type { MachineLock } from '../sync/lock.js';
import type { VcpuControl } from '../vcpu/control.js';
import { newRecord, type StateArena } from '../../cpr/vmstate/vmstate.js';
import { vcpuStateDescriptor, type VcpuRecord } from '../../cpr/kvm-state/vcpu.js';
import type { DeviceEntry, MachineDevice } from '../runtime/device-table.js';
import type { MachineConfig } from './config.js';
import type { DiskImage } from './virtio-plan.js';

/** What checkpoint/restart needs to reach inside the machine (cpr/ only). */
export interface MachineParts {
  readonly config: MachineConfig;
  readonly vm: Vm;
  readonly vcpus: readonly Vcpu[];
  readonly ram: MachineRam;
  readonly arena: StateArena;
  readonly entries: readonly DeviceEntry[];
  readonly devices: readonly MachineDevice[];
  readonly lock: MachineLock;
  /** vCPU i's state as its thread saved it, parked, during the last pause({ capture: true }), or null. */
  capturedVcpuState(i: number): VcpuRecord | null;
  /** The virtio-net devices' taps, by interface name (cpr-transfer hands them to the new process). */
  readonly taps: readonly { ifname: string; fd: number }[];
  /** The virtio-blk devices' images (a cpr-save syncs the writable ones before it writes the state). */
  readonly images: readonly DiskImage[];
}

/** Each vCPU's own saved state, in memory its thread shares, and the capture request it answers. */
export class VcpuCapture {
  readonly records: readonly VcpuRecord[];
  private requestId = 0;

  constructor(
    private readonly control: VcpuControl,
    vcpuCount: number,
  ) {
    this.records = Array.from({ length: vcpuCount }, () => newRecord(vcpuStateDescriptor, true) as VcpuRecord);
  }

  /** The shared buffers the vCPU threads write into. */
  get buffers(): SharedArrayBuffer[] {
    return this.records.map((r) => r.$buffer as SharedArrayBuffer);
  }

  /**
   * Asks the parked vCPU threads to save their state, when `wanted` and worth it, and waits for them (at most 1 s;
   * one that did not answer is read by whoever wants its state). It pays off only with several vCPUs (they save in
   * parallel); with one, the main thread's warm path is as fast (measured: 0.7-0.8 ms stop + collect either way).
   * Called once the vCPUs AND the I/O thread are parked: a request the I/O thread completes after a vCPU saved its
   * LAPIC would raise an interrupt that the checkpoint lacks, and the restored guest would wait for it forever.
   */
  async collect(wanted: boolean, sync: boolean): Promise<void> {
    this.requestId = 0;
    if (!wanted || this.records.length < 2) return;
    const request = this.control.requestCapture();
    await this.control.waitCaptured(request, 1000, sync);
    this.requestId = request;
  }

  /** No capture applies (the vCPUs were parked already, or ran again): whoever wants their state reads it. */
  clear(): void {
    this.requestId = 0;
  }

  /** vCPU i's state as it saved it for the last request, or null (none, or saving failed: read it with getState()). */
  stateOf(i: number): VcpuRecord | null {
    return this.requestId !== 0 && this.control.capturedFor(i, this.requestId) ? this.records[i] : null;
  }
}
