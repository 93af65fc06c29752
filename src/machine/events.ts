// The machine's QMP-visible events, named and shaped as QEMU sends them; QMP servers and tests listen.

/** QMP events the machine raises: name and QEMU's data. */
export type MachineEvent =
  | { event: 'STOP' }
  | { event: 'RESUME' }
  | { event: 'RESET'; data: { guest: boolean; reason: string } }
  | { event: 'SHUTDOWN'; data: { guest: boolean; reason: string } }
  | { event: 'POWERDOWN' }
  | { event: 'SUSPEND' }
  | { event: 'WAKEUP' }
  | { event: 'GUEST_PANICKED'; data: { action: 'poweroff' | 'pause' | 'run' } };

export class MachineEvents {
  private readonly listeners = new Set<(e: MachineEvent) => void>();

  /** Adds a listener; the returned function removes it. */
  on(listener: (e: MachineEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  emit(e: MachineEvent): void {
    for (const l of this.listeners) l(e);
  }
}
