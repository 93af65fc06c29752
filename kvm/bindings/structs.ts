// The KVM structures tsvmm passes to the kernel (x86-64), declared member by member as in <linux/kvm.h> and
// <asm/kvm.h>. `LAYOUTS` is the computed table (struct → size, field → offset/size) that the codecs
// (kvm/bindings/codec-vcpu.ts, kvm/bindings/codec-vm.ts), kvm/run.ts and kvm/bindings/ioctls.ts read; kvm/bindings/abi.test.ts compiles a C program
// from this same table and compares every number with the system header.
import {
  struct,
  union,
  array,
  flex,
  each,
  layoutOf,
  type AggregateType,
  type Layout,
  type FieldInfo,
} from '../../src/sys/c-layout.js';

const u8 = 'u8',
  u16 = 'u16',
  u32 = 'u32',
  s32 = 's32',
  u64 = 'u64',
  s64 = 's64',
  char = 'char';

// ---- vCPU registers ---------------------------------------------------------------------------------------------

const kvm_regs = struct('kvm_regs', [
  ...each(u64, 'rax', 'rbx', 'rcx', 'rdx', 'rsi', 'rdi', 'rsp', 'rbp'),
  ...each(u64, 'r8', 'r9', 'r10', 'r11', 'r12', 'r13', 'r14', 'r15'),
  ...each(u64, 'rip', 'rflags'),
]);

const kvm_segment = struct('kvm_segment', [
  ['base', u64],
  ['limit', u32],
  ['selector', u16],
  ['type', u8],
  ...each(u8, 'present', 'dpl', 'db', 's', 'l', 'g', 'avl', 'unusable', 'padding'),
]);

const kvm_dtable = struct('kvm_dtable', [
  ['base', u64],
  ['limit', u16],
  ['padding', array(u16, 3)],
]);

const kvm_sregs = struct('kvm_sregs', [
  ...each(kvm_segment, 'cs', 'ds', 'es', 'fs', 'gs', 'ss', 'tr', 'ldt'),
  ...each(kvm_dtable, 'gdt', 'idt'),
  ...each(u64, 'cr0', 'cr2', 'cr3', 'cr4', 'cr8', 'efer', 'apic_base'),
  ['interrupt_bitmap', array(u64, 4)],
]);

const kvm_fpu = struct('kvm_fpu', [
  ['fpr', array(array(u8, 16), 8)],
  ['fcw', u16],
  ['fsw', u16],
  ['ftwx', u8],
  ['pad1', u8],
  ['last_opcode', u16],
  ['last_ip', u64],
  ['last_dp', u64],
  ['xmm', array(array(u8, 16), 16)],
  ['mxcsr', u32],
  ['pad2', u32],
]);

const kvm_msr_entry = struct('kvm_msr_entry', [
  ['index', u32],
  ['reserved', u32],
  ['data', u64],
]);
const kvm_msrs = struct('kvm_msrs', [
  ['nmsrs', u32],
  ['pad', u32],
  ['entries', flex(kvm_msr_entry)],
]);
const kvm_msr_list = struct('kvm_msr_list', [
  ['nmsrs', u32],
  ['indices', flex(u32)],
]);

const kvm_cpuid_entry2 = struct('kvm_cpuid_entry2', [
  ...each(u32, 'function', 'index', 'flags', 'eax', 'ebx', 'ecx', 'edx'),
  ['padding', array(u32, 3)],
]);
const kvm_cpuid2 = struct('kvm_cpuid2', [
  ['nent', u32],
  ['padding', u32],
  ['entries', flex(kvm_cpuid_entry2)],
]);

const kvm_lapic_state = struct('kvm_lapic_state', [['regs', array(char, 0x400)]]);

const kvm_xsave = struct('kvm_xsave', [
  ['region', array(u32, 1024)],
  ['extra', flex(u32)],
]);

const kvm_xcr = struct('kvm_xcr', [
  ['xcr', u32],
  ['reserved', u32],
  ['value', u64],
]);
const kvm_xcrs = struct('kvm_xcrs', [
  ['nr_xcrs', u32],
  ['flags', u32],
  ['xcrs', array(kvm_xcr, 16)],
  ['padding', array(u64, 16)],
]);

const kvm_vcpu_events = struct('kvm_vcpu_events', [
  ['exception', struct(undefined, [...each(u8, 'injected', 'nr', 'has_error_code', 'pending'), ['error_code', u32]])],
  ['interrupt', struct(undefined, each(u8, 'injected', 'nr', 'soft', 'shadow'))],
  ['nmi', struct(undefined, each(u8, 'injected', 'pending', 'masked', 'pad'))],
  ['sipi_vector', u32],
  ['flags', u32],
  ['smi', struct(undefined, each(u8, 'smm', 'pending', 'smm_inside_nmi', 'latched_init'))],
  ['triple_fault', struct(undefined, [['pending', u8]])],
  ['reserved', array(u8, 26)],
  ['exception_has_payload', u8],
  ['exception_payload', u64],
]);

const kvm_mp_state = struct('kvm_mp_state', [['mp_state', u32]]);

const kvm_debugregs = struct('kvm_debugregs', [
  ['db', array(u64, 4)],
  ['dr6', u64],
  ['dr7', u64],
  ['flags', u64],
  ['reserved', array(u64, 9)],
]);

// ---- interrupt controllers, PIT, clock --------------------------------------------------------------------------

const kvm_pic_state = struct(
  'kvm_pic_state',
  each(
    u8,
    'last_irr',
    'irr',
    'imr',
    'isr',
    'priority_add',
    'irq_base',
    'read_reg_select',
    'poll',
    'special_mask',
    'init_state',
    'auto_eoi',
    'rotate_on_auto_eoi',
    'special_fully_nested_mode',
    'init4',
    'elcr',
    'elcr_mask',
  ),
);

/** Pins of the in-kernel IOAPIC (KVM_IOAPIC_NUM_PINS). */
export const IOAPIC_NUM_PINS = 24;

// redirtbl[] is a union of `__u64 bits` and a bitfield struct; the table holds the u64 view, and
// IOAPIC_REDIR_FIELDS below gives the bitfield positions (also checked against the header).
const kvm_ioapic_state = struct('kvm_ioapic_state', [
  ['base_address', u64],
  ...each(u32, 'ioregsel', 'id', 'irr', 'pad'),
  ['redirtbl', array(u64, IOAPIC_NUM_PINS)],
]);

const kvm_irqchip = struct('kvm_irqchip', [
  ['chip_id', u32],
  ['pad', u32],
  [
    'chip',
    union([
      ['dummy', array(char, 512)],
      ['pic', kvm_pic_state],
      ['ioapic', kvm_ioapic_state],
    ]),
  ],
]);

const kvm_pit_channel_state = struct('kvm_pit_channel_state', [
  ['count', u32],
  ['latched_count', u16],
  ...each(
    u8,
    'count_latched',
    'status_latched',
    'status',
    'read_state',
    'write_state',
    'write_latch',
    'rw_mode',
    'mode',
    'bcd',
    'gate',
  ),
  ['count_load_time', s64],
]);

const kvm_pit_state2 = struct('kvm_pit_state2', [
  ['channels', array(kvm_pit_channel_state, 3)],
  ['flags', u32],
  ['reserved', array(u32, 9)],
]);

const kvm_pit_config = struct('kvm_pit_config', [
  ['flags', u32],
  ['pad', array(u32, 15)],
]);

const kvm_clock_data = struct('kvm_clock_data', [
  ['clock', u64],
  ['flags', u32],
  ['pad0', u32],
  ['realtime', u64],
  ['host_tsc', u64],
  ['pad', array(u32, 4)],
]);

// ---- VM plumbing: memory, interrupts, eventfds, capabilities ----------------------------------------------------

const kvm_userspace_memory_region = struct('kvm_userspace_memory_region', [
  ['slot', u32],
  ['flags', u32],
  ['guest_phys_addr', u64],
  ['memory_size', u64],
  ['userspace_addr', u64],
]);

const kvm_irq_level = struct('kvm_irq_level', [
  [
    null,
    union([
      ['irq', u32],
      ['status', s32],
    ]),
  ],
  ['level', u32],
]);

const kvm_irqfd = struct('kvm_irqfd', [...each(u32, 'fd', 'gsi', 'flags', 'resamplefd'), ['pad', array(u8, 16)]]);

const kvm_ioeventfd = struct('kvm_ioeventfd', [
  ['datamatch', u64],
  ['addr', u64],
  ['len', u32],
  ['fd', s32],
  ['flags', u32],
  ['pad', array(u8, 36)],
]);

const kvm_irq_routing_irqchip = struct('kvm_irq_routing_irqchip', [
  ['irqchip', u32],
  ['pin', u32],
]);
const kvm_irq_routing_msi = struct('kvm_irq_routing_msi', [
  ...each(u32, 'address_lo', 'address_hi', 'data'),
  [
    null,
    union([
      ['pad', u32],
      ['devid', u32],
    ]),
  ],
]);
// Declared only for its u64 members, which make the routing entry 8-byte aligned on every architecture.
const kvm_irq_routing_s390_adapter = struct('kvm_irq_routing_s390_adapter', [
  ...each(u64, 'ind_addr', 'summary_addr', 'ind_offset'),
  ...each(u32, 'summary_offset', 'adapter_id'),
]);
const kvm_irq_routing_entry = struct('kvm_irq_routing_entry', [
  ...each(u32, 'gsi', 'type', 'flags', 'pad'),
  [
    'u',
    union([
      ['irqchip', kvm_irq_routing_irqchip],
      ['msi', kvm_irq_routing_msi],
      ['adapter', kvm_irq_routing_s390_adapter],
      ['pad', array(u32, 8)],
    ]),
  ],
]);
const kvm_irq_routing = struct('kvm_irq_routing', [
  ['nr', u32],
  ['flags', u32],
  ['entries', flex(kvm_irq_routing_entry)],
]);

const kvm_msi = struct('kvm_msi', [
  ...each(u32, 'address_lo', 'address_hi', 'data', 'flags', 'devid'),
  ['pad', array(u8, 12)],
]);

const kvm_enable_cap = struct('kvm_enable_cap', [
  ['cap', u32],
  ['flags', u32],
  ['args', array(u64, 4)],
  ['pad', array(u8, 64)],
]);

// dirty_bitmap is a `void *` in a union with a u64: 8 bytes on x86-64, declared here as the u64.
const kvm_dirty_log = struct('kvm_dirty_log', [
  ['slot', u32],
  ['padding1', u32],
  [
    null,
    union([
      ['dirty_bitmap', u64],
      ['padding2', u64],
    ]),
  ],
]);

const kvm_signal_mask = struct('kvm_signal_mask', [
  ['len', u32],
  ['sigset', flex(u8)],
]);

// ---- kvm_run: the page shared with the kernel -------------------------------------------------------------------

const kvm_debug_exit_arch = struct('kvm_debug_exit_arch', [
  ['exception', u32],
  ['pad', u32],
  ...each(u64, 'pc', 'dr6', 'dr7'),
]);

// Only the exit structs tsvmm decodes are declared; `padding` fixes the union at 256 bytes as in the header.
const kvm_run = struct('kvm_run', [
  ['request_interrupt_window', u8],
  ['immediate_exit', u8],
  ['padding1', array(u8, 6)],
  ['exit_reason', u32],
  ['ready_for_interrupt_injection', u8],
  ['if_flag', u8],
  ['flags', u16],
  ['cr8', u64],
  ['apic_base', u64],
  [
    null,
    union([
      ['hw', struct(undefined, [['hardware_exit_reason', u64]])],
      [
        'fail_entry',
        struct(undefined, [
          ['hardware_entry_failure_reason', u64],
          ['cpu', u32],
        ]),
      ],
      [
        'ex',
        struct(undefined, [
          ['exception', u32],
          ['error_code', u32],
        ]),
      ],
      [
        'io',
        struct(undefined, [
          ['direction', u8],
          ['size', u8],
          ['port', u16],
          ['count', u32],
          ['data_offset', u64],
        ]),
      ],
      ['debug', struct(undefined, [['arch', kvm_debug_exit_arch]])],
      [
        'mmio',
        struct(undefined, [
          ['phys_addr', u64],
          ['data', array(u8, 8)],
          ['len', u32],
          ['is_write', u8],
        ]),
      ],
      [
        'hypercall',
        struct(undefined, [
          ['nr', u64],
          ['args', array(u64, 6)],
          ['ret', u64],
          ['longmode', u32],
          ['pad', u32],
        ]),
      ],
      [
        'internal',
        struct(undefined, [
          ['suberror', u32],
          ['ndata', u32],
          ['data', array(u64, 16)],
        ]),
      ],
      [
        'system_event',
        struct(undefined, [
          ['type', u32],
          ['ndata', u32],
          [
            null,
            union([
              ['flags', u64],
              ['data', array(u64, 16)],
            ]),
          ],
        ]),
      ],
      ['padding', array(char, 256)],
    ]),
  ],
  ['kvm_valid_regs', u64],
  ['kvm_dirty_regs', u64],
  ['s', union([['padding', array(char, 2048)]])],
]);

/** Every struct tsvmm exchanges with KVM, by C tag. */
const declarations: readonly AggregateType[] = [
  kvm_regs,
  kvm_segment,
  kvm_dtable,
  kvm_sregs,
  kvm_fpu,
  kvm_msr_entry,
  kvm_msrs,
  kvm_msr_list,
  kvm_cpuid_entry2,
  kvm_cpuid2,
  kvm_lapic_state,
  kvm_xsave,
  kvm_xcr,
  kvm_xcrs,
  kvm_vcpu_events,
  kvm_mp_state,
  kvm_debugregs,
  kvm_pic_state,
  kvm_ioapic_state,
  kvm_irqchip,
  kvm_pit_channel_state,
  kvm_pit_state2,
  kvm_pit_config,
  kvm_clock_data,
  kvm_userspace_memory_region,
  kvm_irq_level,
  kvm_irqfd,
  kvm_ioeventfd,
  kvm_irq_routing_irqchip,
  kvm_irq_routing_msi,
  kvm_irq_routing_entry,
  kvm_irq_routing,
  kvm_msi,
  kvm_enable_cap,
  kvm_dirty_log,
  kvm_signal_mask,
  kvm_debug_exit_arch,
  kvm_run,
];

export type StructName =
  | 'kvm_regs'
  | 'kvm_segment'
  | 'kvm_dtable'
  | 'kvm_sregs'
  | 'kvm_fpu'
  | 'kvm_msr_entry'
  | 'kvm_msrs'
  | 'kvm_msr_list'
  | 'kvm_cpuid_entry2'
  | 'kvm_cpuid2'
  | 'kvm_lapic_state'
  | 'kvm_xsave'
  | 'kvm_xcr'
  | 'kvm_xcrs'
  | 'kvm_vcpu_events'
  | 'kvm_mp_state'
  | 'kvm_debugregs'
  | 'kvm_pic_state'
  | 'kvm_ioapic_state'
  | 'kvm_irqchip'
  | 'kvm_pit_channel_state'
  | 'kvm_pit_state2'
  | 'kvm_pit_config'
  | 'kvm_clock_data'
  | 'kvm_userspace_memory_region'
  | 'kvm_irq_level'
  | 'kvm_irqfd'
  | 'kvm_ioeventfd'
  | 'kvm_irq_routing_irqchip'
  | 'kvm_irq_routing_msi'
  | 'kvm_irq_routing_entry'
  | 'kvm_irq_routing'
  | 'kvm_msi'
  | 'kvm_enable_cap'
  | 'kvm_dirty_log'
  | 'kvm_signal_mask'
  | 'kvm_debug_exit_arch'
  | 'kvm_run';

/** The layout table: struct → { size, align, fields: designator → { offset, size, elementSize?, length? } }. */
export const LAYOUTS: Readonly<Record<StructName, Layout>> = Object.freeze(
  Object.fromEntries(
    declarations.map((d) => {
      const l = layoutOf(d);
      return [l.name, l];
    }),
  ) as Record<StructName, Layout>,
);

export function sizeOf(name: StructName): number {
  return LAYOUTS[name].size;
}

/** A field's entry; throws at once (at module load, where codecs resolve their offsets) for a misspelt path. */
export function fieldOf(name: StructName, path: string): FieldInfo {
  const f = LAYOUTS[name].fields[path];
  if (!f) throw new Error(`structs: ${name} has no field ${path}`);
  return f;
}

export function offsetOf(name: StructName, path: string): number {
  return fieldOf(name, path).offset;
}

/**
 * Bit positions [lowest bit, width] of the IOAPIC redirection-table bitfields inside the 64-bit `bits` view of
 * kvm_ioapic_state.redirtbl[] (GCC's little-endian bitfield allocation; the abi test checks each one).
 */
export const IOAPIC_REDIR_FIELDS = {
  vector: [0, 8],
  delivery_mode: [8, 3],
  dest_mode: [11, 1],
  delivery_status: [12, 1],
  polarity: [13, 1],
  remote_irr: [14, 1],
  trig_mode: [15, 1],
  mask: [16, 1],
  dest_id: [56, 8],
} as const satisfies Record<string, readonly [number, number]>;
