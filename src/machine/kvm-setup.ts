// The KVM side of a new machine: the VM with its in-kernel irqchip (PIC, IOAPIC, LAPICs) and PIT, guest RAM in its
// memory slots, and the vCPUs with their CPUID. Each resource is added to `release` as soon as it exists.
import { Kvm } from '../../kvm/kvm.js';
import type { Vm } from '../../kvm/vm.js';
import type { Vcpu } from '../../kvm/vcpu.js';
import { cpuidFor } from '../../kvm/cpuid.js';
import { KVM_PIT_SPEAKER_DUMMY } from '../../kvm/bindings/constants.js';
import { createGuestRam, type MachineRam } from '../memory/config.js';
import type { MachineConfig } from './config.js';
import type { Teardown } from './teardown.js';

/** KVM's real-mode helpers for VMX hosts, placed where QEMU puts them: just below the BIOS at 4 GiB. */
const IDENTITY_MAP_ADDR = 0xfeffc000;
const TSS_ADDR = 0xfeffd000;

export interface KvmMachine {
  readonly kvm: Kvm;
  readonly vm: Vm;
  readonly ram: MachineRam;
  readonly vcpus: Vcpu[];
}

/** `ram`: guest RAM already mapped (cpr-transfer), else mapped as the configuration says. */
export function setUpKvm(
  config: MachineConfig,
  { kvmPath, ram: givenRam }: { kvmPath?: string; ram?: MachineRam },
  release: Teardown,
): KvmMachine {
  // RAM first: a RAM file tsvmm refuses (not its user's, writable by others, a symlink, locked by another VM) is
  // reported on any host, and RAM outlives the VM that maps it (the teardown runs newest first).
  const ram = givenRam ?? createGuestRam(config.memory);
  release.add(() => ram.close());
  const kvm = Kvm.open(kvmPath);
  release.add(() => kvm.close());
  const vm = kvm.createVm();
  release.add(() => vm.close());
  vm.setIdentityMapAddr(IDENTITY_MAP_ADDR);
  vm.setTssAddr(TSS_ADDR);
  vm.createIrqchip();
  vm.createPit2(KVM_PIT_SPEAKER_DUMMY);

  for (const [slot, r] of ram.regions.entries())
    vm.setUserMemoryRegion({ slot, guestPhysAddr: r.gpa, memorySize: r.size, userspaceAddr: r.hostAddress });

  const supported = kvm.supportedCpuid();
  const vcpus: Vcpu[] = [];
  release.add(() => {
    for (const v of vcpus) v.close();
  });
  for (let id = 0; id < config.cpus; id++) {
    const vcpu = vm.createVcpu(id);
    vcpus.push(vcpu);
    vcpu.setCpuid2(cpuidFor(supported, { policy: config.cpuModel, vcpuId: id, vcpuCount: config.cpus }));
  }
  return { kvm, vm, ram, vcpus };
}
