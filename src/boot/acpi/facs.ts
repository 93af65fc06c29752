// The FACS (Firmware ACPI Control Structure, ACPI 6.x 5.2.10): the one ACPI structure the OS writes to. Before
// entering S3 the guest stores where it wants to resume (the waking vectors); on wake-up the "firmware" — here
// tsvmm — reads them and starts the boot CPU there. No checksum; 64-byte aligned; at least 64 bytes.
import type { GuestMemory } from '../../memory/guest-memory.js';

export const FACS_SIGNATURE = 'FACS';
export const FACS_LENGTH = 64;
export const FACS_ALIGN = 64;
/** FACS version 2: the layout of ACPI 4.0 and later (x_firmware_waking_vector, OSPM flags). */
export const FACS_VERSION = 2;

// ---- field offsets ----------------------------------------------------------------------------------------------
const OFF_SIGNATURE = 0;
const OFF_LENGTH = 4;
const OFF_HARDWARE_SIGNATURE = 8; // changes when the hardware configuration changes (S4 resume check)
export const FACS_OFF_FIRMWARE_WAKING_VECTOR = 12; // u32: real-mode waking vector the OS sets
const OFF_GLOBAL_LOCK = 16; // u32
const OFF_FLAGS = 20; // u32: firmware's capabilities
export const FACS_OFF_X_FIRMWARE_WAKING_VECTOR = 24; // u64: protected/long-mode waking vector
const OFF_VERSION = 32; // u8
export const FACS_OFF_OSPM_FLAGS = 36; // u32: what the OS asks for

// ---- flags ------------------------------------------------------------------------------------------------------
export const FACS_FLAG_S4BIOS = 0x1; // S4BIOS_F: firmware supports S4BIOS (no)
export const FACS_FLAG_64BIT_WAKE_SUPPORTED = 0x2; // 64BIT_WAKE_SUPPORTED_F: firmware can wake in long mode (no)
export const FACS_OSPM_64BIT_WAKE = 0x1; // 64BIT_WAKE_F (OSPM flags): the OS asks to wake in long mode

/**
 * The FACS tsvmm hands the guest: both waking vectors 0, the global lock free, no S4BIOS and no 64-bit wake
 * (a guest must give a real-mode vector, or a 32-bit one in X_Firmware_Waking_Vector).
 */
export function buildFacs(hardwareSignature = 0): Uint8Array {
  const bytes = new Uint8Array(FACS_LENGTH);
  const v = new DataView(bytes.buffer);
  for (let i = 0; i < 4; i++) bytes[OFF_SIGNATURE + i] = FACS_SIGNATURE.charCodeAt(i);
  v.setUint32(OFF_LENGTH, FACS_LENGTH, true);
  v.setUint32(OFF_HARDWARE_SIGNATURE, hardwareSignature >>> 0, true);
  v.setUint32(FACS_OFF_FIRMWARE_WAKING_VECTOR, 0, true);
  v.setUint32(OFF_GLOBAL_LOCK, 0, true);
  v.setUint32(OFF_FLAGS, 0, true);
  v.setBigUint64(FACS_OFF_X_FIRMWARE_WAKING_VECTOR, 0n, true);
  bytes[OFF_VERSION] = FACS_VERSION;
  v.setUint32(FACS_OFF_OSPM_FLAGS, 0, true);
  return bytes;
}

/**
 * Where a guest asked to resume after S3, as firmware decides it (ACPI 6.x 5.2.10):
 * - `real`: X_Firmware_Waking_Vector is 0, so Firmware_Waking_Vector holds a physical address below 1 MiB and the
 *   boot CPU starts in real mode at CS:IP = (vector >> 4):(vector & 0xF), CS base = vector & ~0xF.
 * - `protected32`: X_Firmware_Waking_Vector is set and 64BIT_WAKE_F clear: 32-bit protected mode, paging off,
 *   flat 4 GiB segments, EIP = vector.
 * - `long64`: X_Firmware_Waking_Vector with 64BIT_WAKE_F set. tsvmm's FACS does not offer it
 *   (64BIT_WAKE_SUPPORTED_F clear), so a guest asking for it breaks the contract; reported for the machine to refuse.
 * - `none`: both vectors are 0 (the guest never prepared a resume: firmware would boot normally).
 * - `invalid`: the FACS or a vector is unusable; `reason` says why.
 */
export type WakingVector =
  | { readonly kind: 'real'; readonly cs: number; readonly ip: number; readonly address: number }
  | { readonly kind: 'protected32'; readonly address: number }
  | { readonly kind: 'long64'; readonly address: bigint }
  | { readonly kind: 'none' }
  | { readonly kind: 'invalid'; readonly reason: string };

/** The highest real-mode waking vector: the vector's segment:offset must address below 1 MiB. */
const REAL_MODE_LIMIT = 0x100000;

/** Reads the waking vector from the FACS at `facsAddress` in guest memory; never throws for guest-made values. */
export function readWakingVector(memory: GuestMemory, facsAddress: number): WakingVector {
  if (!Number.isSafeInteger(facsAddress) || facsAddress < 0 || !memory.contains(facsAddress, FACS_LENGTH)) {
    return { kind: 'invalid', reason: `FACS at 0x${facsAddress.toString(16)} is not in guest RAM` };
  }
  const signature = String.fromCharCode(...memory.read(facsAddress + OFF_SIGNATURE, 4));
  if (signature !== FACS_SIGNATURE)
    return {
      kind: 'invalid',
      reason: `no FACS at 0x${facsAddress.toString(16)} (signature ${JSON.stringify(signature)})`,
    };
  const length = memory.readU32(facsAddress + OFF_LENGTH);
  if (length < FACS_LENGTH) return { kind: 'invalid', reason: `FACS length ${length} < ${FACS_LENGTH}` };

  const x = memory.readU64(facsAddress + FACS_OFF_X_FIRMWARE_WAKING_VECTOR);
  if (x !== 0n) {
    const ospm = memory.readU32(facsAddress + FACS_OFF_OSPM_FLAGS);
    if (ospm & FACS_OSPM_64BIT_WAKE) return { kind: 'long64', address: x };
    if (x > 0xffffffffn) return { kind: 'invalid', reason: `32-bit waking vector 0x${x.toString(16)} is above 4 GiB` };
    return { kind: 'protected32', address: Number(x) };
  }
  const vector = memory.readU32(facsAddress + FACS_OFF_FIRMWARE_WAKING_VECTOR);
  if (vector === 0) return { kind: 'none' };
  if (vector >= REAL_MODE_LIMIT)
    return { kind: 'invalid', reason: `real-mode waking vector 0x${vector.toString(16)} is not below 1 MiB` };
  return { kind: 'real', cs: vector >>> 4, ip: vector & 0xf, address: vector };
}
