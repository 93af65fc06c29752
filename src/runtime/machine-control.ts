// The one MachineControl: a device's request of the machine as a whole becomes a message for the main thread, whose
// machine decides what it means (-no-reboot, -no-shutdown, -action…). Every thread that runs devices builds one and
// says only how its messages travel: a vCPU thread parks every vCPU first and posts, the I/O thread posts, the main
// thread queues the request behind the device code that made it.
import type { MachineControl, WakeEventSource } from '../bus/types.js';

/** A device's request as the main thread receives it. `vcpu`: the vCPU whose thread sent it, -1 for other threads. */
export type MachineRequest =
  | { type: 'exit'; vcpu: number; status: number; reason: string }
  | { type: 'reset'; vcpu: number; reason: string }
  | { type: 'power-off'; vcpu: number; reason: string }
  | { type: 'suspend'; vcpu: number; reason: string };

export class MachineRequests implements MachineControl {
  /**
   * `sender`: the vCPU id, or -1. `wake` receives device wake-up events; only the main thread passes one, since
   * vCPUs and the I/O thread are parked while the VM is suspended, so their devices raise none.
   */
  constructor(
    private readonly sender: number,
    private readonly send: (request: MachineRequest) => void,
    private readonly wake: (source: WakeEventSource) => void = () => {},
  ) {}

  exit(status: number, reason: string): void {
    this.send({ type: 'exit', vcpu: this.sender, status, reason });
  }

  reset(reason: string): void {
    this.send({ type: 'reset', vcpu: this.sender, reason });
  }

  powerOff(reason: string): void {
    this.send({ type: 'power-off', vcpu: this.sender, reason });
  }

  suspend(reason: string): void {
    this.send({ type: 'suspend', vcpu: this.sender, reason });
  }

  wakeEvent(source: WakeEventSource): void {
    this.wake(source);
  }
}
