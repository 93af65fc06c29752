// The machine's threads: one worker per vCPU and, when a device has host I/O, the I/O thread. They start parked; the
// main thread parks, kicks, resumes and stops them together, and they report to it through one callback.
import { exitReasonName } from '../../kvm/run.js';
import { setPriority } from 'node:os';
import { takeVcpuThread, discardVcpuThreads, type VcpuThread } from '../vcpu/threads.js';
import type { Vcpu } from '../../kvm/vcpu.js';
import type { VcpuFeatures } from '../../kvm/vcpu-features.js';
import { getpid, tgkill, SIGUSR2 } from '../sys/libc.js';
import { VcpuRunState, type VcpuControl } from '../vcpu/control.js';
import type { VcpuEvent, VcpuThreadInit } from '../vcpu/messages.js';
import { IoThread } from '../io/thread.js';
import type { IoThreadEvent } from '../io/messages.js';

/** What a thread tells the main thread: one of its events, or that it crashed. */
export type ThreadReport = VcpuEvent | IoThreadEvent | { type: 'crash'; who: string; error: Error };

/** What every thread shares: the VM fd, RAM, the device table and state, outputs, the lock, doorbell and MSI. */
export type SharedThreadInit = Pick<
  VcpuThreadInit,
  'vmFd' | 'ram' | 'arena' | 'devices' | 'outputs' | 'lock' | 'doorbell' | 'msi' | 'ioEvents'
>;

export interface ThreadsPlan {
  readonly shared: SharedThreadInit;
  readonly vcpus: readonly Vcpu[];
  readonly features: VcpuFeatures;
  readonly control: VcpuControl;
  /** Where each vCPU saves its own state on a capture request (VcpuCapture's records). */
  readonly stateRecords: readonly SharedArrayBuffer[];
  /** Start the I/O thread too (some device has host fds or queue notifications to serve). */
  readonly withIoThread: boolean;
  readonly report: (report: ThreadReport) => void;
}

/** How long stopping waits for a thread to leave; a vCPU stuck in KVM_RUN longer would hang process exit. */
const STOP_WAIT_MS = 5000;

export class MachineThreads {
  private readonly started: VcpuThread[] = [];
  private readonly exits: Promise<void>[] = [];
  private io: IoThread | null = null;

  constructor(private readonly plan: ThreadsPlan) {}

  get control(): VcpuControl {
    return this.plan.control;
  }

  /**
   * Starts every thread parked: their start-up (module loading) overlaps the rest of the set-up. Whatever started
   * before a failure is known to stop() and abort().
   */
  start(): void {
    const { shared, vcpus, control, report } = this.plan;
    // Without a handler the kick signal would kill the process; with one, it only interrupts KVM_RUN.
    process.on('SIGUSR2', ignoreKick);
    control.requestPause();
    for (const vcpu of vcpus) {
      const thread = takeVcpuThread();
      this.started.push(thread);
      thread.start({
        ...shared,
        vcpuId: vcpu.id,
        vcpuFd: vcpu.fd,
        vcpuCount: vcpus.length,
        mmapSize: vcpu.mmapSize,
        features: this.plan.features,
        control: control.buffer,
        stateRecord: this.plan.stateRecords[vcpu.id],
        warmCapture: vcpus.length > 1,
      });
      const worker = thread.worker;
      worker.on('message', (event: VcpuEvent) => report(event));
      worker.on('error', (error) => report({ type: 'crash', who: `vCPU ${vcpu.id} thread`, error }));
      this.exits.push(new Promise((resolve) => worker.once('exit', () => resolve())));
    }
    // Threads started for a vCPU count guessed too high are not needed.
    void discardVcpuThreads();
    if (!this.plan.withIoThread) return;
    // The I/O thread runs while the vCPUs run (a checkpoint saves device state with both parked).
    this.io = IoThread.start(shared, {
      paused: true,
      onEvent: (event: IoThreadEvent) => report(event),
      onCrash: (error) => report({ type: 'crash', who: 'I/O thread', error }),
    });
  }

  /** Waits until the I/O thread has built its devices and parked; a hang guard of `guardMs`, not a budget. */
  async ready(guardMs: number): Promise<void> {
    await this.io?.ready(guardMs);
  }

  /** The vCPU threads' ids (0 until a thread has started). */
  tids(): number[] {
    return this.plan.vcpus.map((v) => this.plan.control.tid(v.id));
  }

  /** Wakes every vCPU out of KVM_RUN: immediate_exit makes the next entry return, the signal ends the current one. */
  kickAll(): void {
    const pid = getpid();
    for (const vcpu of this.plan.vcpus) {
      vcpu.run.immediateExit = 1;
      const tid = this.plan.control.tid(vcpu.id);
      if (tid > 0) {
        try {
          tgkill(pid, tid, SIGUSR2);
        } catch {
          /* the thread has already gone */
        }
      }
    }
  }

  /**
   * Parks every vCPU (kicking those in KVM_RUN), then the I/O thread: no device code runs until they resume. All or
   * nothing: if a thread does not park in time, every thread is let go again before the error is thrown, so the
   * machine runs on as its run state says (a half-parked VM that reports `running` could never be resumed).
   */
  async park(why: string): Promise<void> {
    await this.parkOrUndo(async () => {
      this.plan.control.requestPause();
      this.kickAll();
      if (!(await this.plan.control.waitAllParked(5000))) throw new Error(`vCPUs did not stop ${why}`);
      await this.io?.pause();
    });
  }

  /** As park(); `sync` blocks this thread instead (~0.1-0.3 ms), for a checkpoint inside the guest's pause. */
  async pause(sync: boolean): Promise<void> {
    await this.parkOrUndo(async () => {
      const control = this.plan.control;
      control.requestPause();
      this.kickAll();
      const parked = sync ? control.waitAllParkedSync(5000) : await control.waitAllParked(5000);
      if (!parked) throw new Error('vCPUs did not stop within 5 s');
      if (sync) this.io?.pauseSync();
      else await this.io?.pause();
    });
  }

  private async parkOrUndo(park: () => Promise<void>): Promise<void> {
    try {
      await park();
    } catch (e) {
      this.resume();
      throw e;
    }
  }

  /** Parks the I/O thread alone (the vCPUs are parked already). */
  async pauseIo(): Promise<void> {
    await this.io?.pause();
  }

  /**
   * One line per vCPU saying where its thread is (for a guest that did not finish): parked or running, in KVM_RUN or
   * handling which exit, and how many exits it made in `sampleMs` — 0 while running means stuck in one place.
   */
  async whereAreTheVcpus(sampleMs = 200): Promise<string[]> {
    const control = this.plan.control;
    const ids = this.plan.vcpus.map((v) => v.id);
    const before = ids.map((id) => control.where(id).exits);
    await new Promise((r) => setTimeout(r, sampleMs));
    return ids.map((id, i) => {
      const w = control.where(id);
      if (w.state === VcpuRunState.Starting) return `vcpu ${id}: starting, its thread has not entered the guest yet`;
      const place = w.inGuest
        ? 'in KVM_RUN'
        : w.exitReason < 0
          ? 'back from an interrupted KVM_RUN'
          : `handling a ${exitReasonName(w.exitReason)} exit`;
      return `vcpu ${id}: ${VcpuRunState[w.state].toLowerCase()}, ${place}, ${(w.exits - before[i]) >>> 0} exits in ${sampleMs} ms (${w.exits} in all)`;
    });
  }

  resume(): void {
    this.plan.control.resume();
    this.io?.resume();
  }

  /** Lets the vCPUs go on after one asked them all to park (the I/O thread was not stopped). */
  resumeVcpus(): void {
    this.plan.control.resume();
  }

  /** Every thread of this process drops to the lowest priority (an ending machine leaves the cores to others). */
  yieldCpu(): void {
    for (const tid of [getpid(), ...this.tids()]) {
      if (tid <= 0) continue;
      try {
        setPriority(tid, 19);
      } catch {
        /* best effort */
      }
    }
  }

  /** Ends every thread; true once all have exited, false if a vCPU thread did not within `waitMs`. */
  async stop(waitMs = STOP_WAIT_MS): Promise<boolean> {
    this.plan.control.requestStop();
    this.kickAll();
    const ioStopped = this.io?.stop(waitMs) ?? Promise.resolve(true);
    const stuck = await Promise.race([
      Promise.all(this.exits).then(() => false),
      new Promise<boolean>((resolve) => setTimeout(() => resolve(true), waitMs).unref()),
    ]);
    if (!stuck) await ioStopped;
    process.off('SIGUSR2', ignoreKick);
    return !stuck;
  }

  /**
   * A failed build: stop every thread started, waiting up to `waitMs` (a thread still loading its code stops once
   * loaded); the vCPUs never ran a guest, so one that does not stop is terminated rather than left behind.
   */
  async abort(waitMs: number): Promise<void> {
    if (await this.stop(waitMs)) return;
    await Promise.all(
      this.started.map(async (t) => {
        await t.loaded(); // ending a thread while its native addon loads would abort the process
        await t.worker.terminate();
      }),
    );
  }
}

function ignoreKick(): void {
  // The signal exists only to interrupt KVM_RUN in a vCPU thread.
}
