// CPUID policy: turns KVM_GET_SUPPORTED_CPUID into the table one vCPU runs with. Every vCPU gets its topology
// (initial APIC id, logical processor count, x2APIC topology leaves), the hypervisor bit and KVM's signature leaf.
// The `pvm-safe` policy also hides what KVM's instruction emulator cannot execute on a PVM host (see docs/linux.md,
// "On this host (PVM)"): CMPXCHG16B, and XSAVE with everything whose state lives in XSAVE areas (AVX and later
// vector extensions, MPX, PKU, CET, AMX, Intel PT), so a guest never takes those paths.
//
// Measured on the PVM host: after KVM_SET_CPUID2 the PVM backend puts the host's XSAVE family back into the
// vCPU's CPUID (leaf 1 XSAVE/OSXSAVE/AVX, leaf 7 AVX2/AVX-512, leaf 0xD) — what KVM_GET_CPUID2 returns and what the
// guest's CPUID instruction sees. The CX16 mask, the topology and the KVM leaves do reach the guest. So on PVM a
// guest must also be told `noxsave` (Linux command line); on VMX/SVM hosts the table is taken as given.
import { KVM_CPUID_FLAG_SIGNIFCANT_INDEX } from './bindings/constants.js';
import type { CpuidEntry } from './bindings/types.js';

export type CpuidPolicy = 'host' | 'pvm-safe';

export interface CpuidOptions {
  policy: CpuidPolicy;
  /** This vCPU's index, used as its APIC id. */
  vcpuId: number;
  /** vCPUs in the VM: one package, one core per vCPU, one thread per core. */
  vcpuCount: number;
}

// ---- leaves -----------------------------------------------------------------------------------------------------
export const LEAF_VENDOR = 0x0; // max basic leaf; vendor string in EBX, EDX, ECX
export const LEAF_FEATURES = 0x1; // family/model, APIC id, feature flags
export const LEAF_CACHE_PARAMS = 0x4; // Intel deterministic cache parameters (one subleaf per cache)
export const LEAF_EXT_FEATURES = 0x7; // structured extended features (subleaves 0, 1, 2)
export const LEAF_EXT_TOPOLOGY = 0xb; // x2APIC topology
export const LEAF_XSAVE = 0xd; // XSAVE components and sizes
export const LEAF_INTEL_PT = 0x14; // processor trace
export const LEAF_AMX_TILE = 0x1d; // AMX tile palettes
export const LEAF_AMX_TMUL = 0x1e; // AMX TMUL
export const LEAF_EXT_TOPOLOGY_V2 = 0x1f; // V2 extended topology (same format as 0xB)
export const LEAF_AVX10 = 0x24; // AVX10 converged vector ISA
export const LEAF_KVM_SIGNATURE = 0x40000000; // hypervisor vendor leaf
export const LEAF_KVM_FEATURES = 0x40000001; // KVM paravirt features (kvmclock, PV EOI, ...)
export const LEAF_EXT_FEATURES_AMD = 0x80000001; // extended feature flags
export const LEAF_ADDRESS_SIZES = 0x80000008; // address sizes; AMD: core count in ECX

// ---- leaf 1 -----------------------------------------------------------------------------------------------------
const L1_EBX_APIC_ID_SHIFT = 24; // EBX[31:24]: initial APIC id
const L1_EBX_LOGICAL_COUNT_SHIFT = 16; // EBX[23:16]: addressable logical processors per package
const L1_ECX_FMA = 1 << 12; // fused multiply-add (VEX-encoded: needs AVX state)
const L1_ECX_CX16 = 1 << 13; // CMPXCHG16B
const L1_ECX_XSAVE = 1 << 26; // XSAVE/XRSTOR/XGETBV/XSETBV
const L1_ECX_OSXSAVE = 1 << 27; // CR4.OSXSAVE mirror
const L1_ECX_AVX = 1 << 28; // AVX (YMM state via XSAVE)
const L1_ECX_F16C = 1 << 29; // half-precision conversion (VEX-encoded)
const L1_ECX_HYPERVISOR = 1 << 31; // running under a hypervisor
const L1_EDX_HTT = 1 << 28; // EBX[23:16] is valid: more than one logical processor

// ---- leaf 4 -----------------------------------------------------------------------------------------------------
const L4_EAX_TYPE_MASK = 0x1f; // EAX[4:0]: cache type, 0 = no more caches
const L4_EAX_LEVEL_SHIFT = 5; // EAX[7:5]: cache level
const L4_EAX_SHARING_SHIFT = 14; // EAX[25:14]: logical processors sharing this cache - 1
const L4_EAX_SHARING_MASK = 0xfff << L4_EAX_SHARING_SHIFT;
const L4_EAX_CORES_SHIFT = 26; // EAX[31:26]: cores per package - 1
const L4_EAX_CORES_MASK = 0x3f << L4_EAX_CORES_SHIFT;
const L4_CORES_MAX = 64;
const L4_SHARING_MAX = 4096;

// ---- leaf 7 -----------------------------------------------------------------------------------------------------
const L7_0_EBX_XSAVE_DEPENDENT =
  (1 << 5) | // AVX2
  (1 << 14) | // MPX (BNDREGS/BNDCSR state components)
  (1 << 16) | // AVX512F
  (1 << 17) | // AVX512DQ
  (1 << 21) | // AVX512_IFMA
  (1 << 25) | // Intel PT (state via XSAVES)
  (1 << 26) | // AVX512PF
  (1 << 27) | // AVX512ER
  (1 << 28) | // AVX512CD
  (1 << 30) | // AVX512BW
  (1 << 31); // AVX512VL
const L7_0_ECX_XSAVE_DEPENDENT =
  (1 << 1) | // AVX512_VBMI
  (1 << 3) | // PKU (PKRU state component)
  (1 << 4) | // OSPKE
  (1 << 6) | // AVX512_VBMI2
  (1 << 7) | // CET shadow stacks (CET state via XSAVES)
  (1 << 9) | // VAES (VEX/EVEX-encoded)
  (1 << 10) | // VPCLMULQDQ (VEX/EVEX-encoded)
  (1 << 11) | // AVX512_VNNI
  (1 << 12) | // AVX512_BITALG
  (1 << 14); // AVX512_VPOPCNTDQ
const L7_0_EDX_XSAVE_DEPENDENT =
  (1 << 2) | // AVX512_4VNNIW
  (1 << 3) | // AVX512_4FMAPS
  (1 << 8) | // AVX512_VP2INTERSECT
  (1 << 20) | // CET indirect branch tracking
  (1 << 22) | // AMX_BF16
  (1 << 23) | // AVX512_FP16
  (1 << 24) | // AMX_TILE
  (1 << 25); // AMX_INT8
const L7_1_EAX_XSAVE_DEPENDENT =
  (1 << 4) | // AVX_VNNI
  (1 << 5) | // AVX512_BF16
  (1 << 21) | // AMX_FP16
  (1 << 23); // AVX_IFMA
const L7_1_EDX_XSAVE_DEPENDENT =
  (1 << 4) | // AVX_VNNI_INT8
  (1 << 5) | // AVX_NE_CONVERT
  (1 << 8) | // AMX_COMPLEX
  (1 << 10) | // AVX_VNNI_INT16
  (1 << 19); // AVX10

// ---- leaf 0xB / 0x1F --------------------------------------------------------------------------------------------
const TOPO_LEVEL_INVALID = 0;
const TOPO_LEVEL_SMT = 1;
const TOPO_LEVEL_CORE = 2;
const TOPO_ECX_LEVEL_TYPE_SHIFT = 8; // ECX[15:8]: level type; ECX[7:0]: the subleaf index

// ---- 0x80000001 / 0x80000008 ------------------------------------------------------------------------------------
const L80000001_ECX_XSAVE_DEPENDENT =
  (1 << 11) | // XOP (AMD, VEX-like encoding with YMM state)
  (1 << 16); // FMA4
const L80000008_ECX_NC_MASK = 0xff; // AMD: number of cores - 1
const L80000008_ECX_CORE_ID_SIZE_SHIFT = 12; // AMD: ApicIdCoreIdSize, ECX[15:12]
const L80000008_ECX_CORE_ID_SIZE_MASK = 0xf << L80000008_ECX_CORE_ID_SIZE_SHIFT;

/** "KVMKVMKVM\0\0\0" as EBX, ECX, EDX. */
export const KVM_SIGNATURE = { ebx: 0x4b4d564b, ecx: 0x564b4d56, edx: 0x0000004d } as const;

const AMD_LIKE_VENDORS = new Set(['AuthenticAMD', 'HygonGenuine']);

/** The CPUID table for one vCPU under `policy`. The input is not modified. */
export function cpuidFor(supported: readonly CpuidEntry[], options: CpuidOptions): CpuidEntry[] {
  const { policy, vcpuId, vcpuCount } = options;
  if (!Number.isInteger(vcpuCount) || vcpuCount < 1) throw new RangeError(`cpuid: vcpuCount ${vcpuCount} must be ≥ 1`);
  if (!Number.isInteger(vcpuId) || vcpuId < 0 || vcpuId >= vcpuCount) {
    throw new RangeError(`cpuid: vcpuId ${vcpuId} outside 0..${vcpuCount - 1}`);
  }
  const amd = AMD_LIKE_VENDORS.has(vendorOf(supported));
  const coreBits = bitsFor(vcpuCount);
  let entries = supported.map((e) => ({ ...e }));

  for (const e of entries) {
    switch (e.function) {
      case LEAF_FEATURES:
        e.ebx =
          (e.ebx & 0x0000ffff) |
          ((vcpuId & 0xff) << L1_EBX_APIC_ID_SHIFT) |
          (Math.min(vcpuCount, 0xff) << L1_EBX_LOGICAL_COUNT_SHIFT);
        e.ecx |= L1_ECX_HYPERVISOR;
        e.edx = vcpuCount > 1 ? e.edx | L1_EDX_HTT : e.edx & ~L1_EDX_HTT;
        break;
      case LEAF_CACHE_PARAMS:
        if ((e.eax & L4_EAX_TYPE_MASK) !== 0) {
          const level = (e.eax >>> L4_EAX_LEVEL_SHIFT) & 0x7;
          // L1 and L2 belong to one core (one thread); the last level is shared by the whole package.
          const sharing = level >= 3 ? Math.min(vcpuCount, L4_SHARING_MAX) - 1 : 0;
          e.eax =
            (e.eax & ~(L4_EAX_CORES_MASK | L4_EAX_SHARING_MASK)) |
            ((Math.min(vcpuCount, L4_CORES_MAX) - 1) << L4_EAX_CORES_SHIFT) |
            (sharing << L4_EAX_SHARING_SHIFT);
        }
        break;
      case LEAF_KVM_SIGNATURE:
        e.eax = LEAF_KVM_FEATURES;
        Object.assign(e, KVM_SIGNATURE);
        break;
      case LEAF_ADDRESS_SIZES:
        if (amd) {
          e.ecx =
            (e.ecx & ~(L80000008_ECX_NC_MASK | L80000008_ECX_CORE_ID_SIZE_MASK)) |
            ((vcpuCount - 1) & L80000008_ECX_NC_MASK) |
            (coreBits << L80000008_ECX_CORE_ID_SIZE_SHIFT);
        }
        break;
    }
    e.eax >>>= 0;
    e.ebx >>>= 0;
    e.ecx >>>= 0;
    e.edx >>>= 0;
  }

  for (const leaf of [LEAF_EXT_TOPOLOGY, LEAF_EXT_TOPOLOGY_V2]) {
    if (entries.some((e) => e.function === leaf)) {
      entries = [...entries.filter((e) => e.function !== leaf), ...topologyLeaf(leaf, vcpuId, vcpuCount)];
    }
  }

  if (!entries.some((e) => e.function === LEAF_KVM_SIGNATURE)) {
    entries.push({ function: LEAF_KVM_SIGNATURE, index: 0, flags: 0, eax: LEAF_KVM_FEATURES, ...KVM_SIGNATURE });
  }
  if (!entries.some((e) => e.function === LEAF_KVM_FEATURES)) {
    entries.push({ function: LEAF_KVM_FEATURES, index: 0, flags: 0, eax: 0, ebx: 0, ecx: 0, edx: 0 });
  }

  if (policy === 'pvm-safe') applyPvmSafe(entries);
  return entries.sort((a, b) => a.function - b.function || a.index - b.index);
}

/** Leaf 0xB (or 0x1F): an SMT level of one thread, a core level of vcpuCount cores, then the terminating level. */
function topologyLeaf(leaf: number, vcpuId: number, vcpuCount: number): CpuidEntry[] {
  const level = (index: number, shift: number, count: number, type: number): CpuidEntry => ({
    function: leaf,
    index,
    flags: KVM_CPUID_FLAG_SIGNIFCANT_INDEX,
    eax: shift,
    ebx: count,
    ecx: ((type << TOPO_ECX_LEVEL_TYPE_SHIFT) | index) >>> 0,
    edx: vcpuId >>> 0,
  });
  return [
    level(0, 0, 1, TOPO_LEVEL_SMT),
    level(1, bitsFor(vcpuCount), vcpuCount, TOPO_LEVEL_CORE),
    level(2, 0, 0, TOPO_LEVEL_INVALID),
  ];
}

function applyPvmSafe(entries: CpuidEntry[]): void {
  for (const e of entries) {
    switch (e.function) {
      case LEAF_FEATURES:
        e.ecx &= ~(L1_ECX_CX16 | L1_ECX_XSAVE | L1_ECX_OSXSAVE | L1_ECX_AVX | L1_ECX_FMA | L1_ECX_F16C);
        break;
      case LEAF_EXT_FEATURES:
        if (e.index === 0) {
          e.ebx &= ~L7_0_EBX_XSAVE_DEPENDENT;
          e.ecx &= ~L7_0_ECX_XSAVE_DEPENDENT;
          e.edx &= ~L7_0_EDX_XSAVE_DEPENDENT;
        } else if (e.index === 1) {
          e.eax &= ~L7_1_EAX_XSAVE_DEPENDENT;
          e.edx &= ~L7_1_EDX_XSAVE_DEPENDENT;
        }
        break;
      // Without XSAVE there are no XSAVE components, no PT, no AMX palettes and no AVX10.
      case LEAF_XSAVE:
      case LEAF_INTEL_PT:
      case LEAF_AMX_TILE:
      case LEAF_AMX_TMUL:
      case LEAF_AVX10:
        e.eax = e.ebx = e.ecx = e.edx = 0;
        break;
      case LEAF_EXT_FEATURES_AMD:
        e.ecx &= ~L80000001_ECX_XSAVE_DEPENDENT;
        break;
    }
    e.eax >>>= 0;
    e.ebx >>>= 0;
    e.ecx >>>= 0;
    e.edx >>>= 0;
  }
}

/** Bits needed to number `n` things (x2APIC id shift): 1 → 0, 2 → 1, 3..4 → 2, ... */
function bitsFor(n: number): number {
  return n <= 1 ? 0 : Math.ceil(Math.log2(n));
}

/** The 12-character vendor string of leaf 0 ("GenuineIntel", "AuthenticAMD"), or '' when leaf 0 is missing. */
export function vendorOf(entries: readonly CpuidEntry[]): string {
  const leaf0 = entries.find((e) => e.function === LEAF_VENDOR);
  if (!leaf0) return '';
  const bytes = new Uint8Array(new Uint32Array([leaf0.ebx, leaf0.edx, leaf0.ecx]).buffer);
  return String.fromCharCode(...bytes);
}

/** The entry for (leaf, subleaf) as KVM would match it, or undefined. */
export function findCpuid(entries: readonly CpuidEntry[], fn: number, index = 0): CpuidEntry | undefined {
  return entries.find(
    (e) => e.function === fn && ((e.flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX) === 0 || e.index === index),
  );
}
