// tsvmm's exit statuses. A guest's isa-debug-exit write of v gives (v << 1) | 1 — always odd — so every status
// tsvmm picks itself is even and can never be mistaken for a guest's verdict.

export const ExitStatus = {
  /** Clean guest power-off, or a guest reset with -no-reboot. */
  ok: 0,
  /** Bad command line. */
  usage: 2,
  /** /dev/kvm missing or unusable, or the VM could not be set up (RAM, kernel image, …). */
  setupFailed: 4,
  /** The VMM itself failed (a bug): device handler threw, a vCPU thread died. */
  internalError: 70,
  /** The guest triple-faulted (KVM_EXIT_SHUTDOWN) with -no-reboot… or kept doing so. */
  tripleFault: 118,
  /** KVM could not run the guest: KVM_EXIT_INTERNAL_ERROR (e.g. emulation failure). */
  kvmInternalError: 120,
  /** KVM_EXIT_FAIL_ENTRY: the hardware refused the guest state. */
  failEntry: 122,
  /** --timeout expired before the guest ended. */
  timeout: 124,
  /** The guest panicked (pvpanic / KVM_SYSTEM_EVENT_CRASH). */
  guestPanic: 126,
} as const;

export type ExitStatusName = keyof typeof ExitStatus;
