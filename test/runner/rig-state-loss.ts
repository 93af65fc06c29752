// The rig's nested SVM (TCG's emulation of the world switch) now and then loses a guest's CPU state: KVM then
// answers KVM_GET_SREGS with the rig kernel's own registers (CR0 0x80050033, CS 0x10 with L=1, a CR3 far above
// guest RAM) for a 32-bit guest that never enables paging, and tsvmm's capture check (cpr/flows/capture-check.ts)
// refuses to save them. No real host gives KVM state that breaks KVM's own rules, so inside the rig a file that
// failed with that message runs once more, and says so (test/rig/README.md, "Special registers that were never the
// guest's").

const SIGNATURE = /KVM_GET_SREGS answered with special registers KVM itself refuses/;

/** The output line that shows the rig lost a guest's CPU state, or null. */
export function rigStateLoss(output: string): string | null {
  return output.split('\n').find((line) => SIGNATURE.test(line)) ?? null;
}
