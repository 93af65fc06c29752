// A guest poking a register file, played from a fuzzer's input: each step is one byte saying what to do (read,
// write, or a host-side event the target defines, such as time passing or input arriving), then the register, the
// access size and the value. The devices' rule: no access a guest can make throws.
import type { AccessSize, CharOut, HostClock, IrqLine, MachineControl } from '../../src/bus/types.js';
import type { ByteScript } from './bytes.js';

export interface RegisterFile {
  read(offset: number, size: AccessSize): number;
  write(offset: number, size: AccessSize, value: number): void;
}

export interface RegisterPlay {
  /** Registers are at offsets [0, span). */
  span: number;
  sizes: readonly AccessSize[];
  /** A host-side event chosen by the script (its next bytes are the event's own). */
  hostEvent?: (script: ByteScript) => void;
}

/** Plays `script` to its end against `device`. */
export function playRegisters(script: ByteScript, device: RegisterFile, play: RegisterPlay): void {
  while (!script.done) {
    const op = script.u8();
    const offset = script.u8() % play.span;
    const size = play.sizes[(op >> 2) % play.sizes.length];
    switch (op & 3) {
      case 0:
        device.read(offset, size);
        break;
      case 1:
        device.write(offset, size, size === 1 ? script.u8() : size === 2 ? script.u16() : script.u32());
        break;
      default:
        play.hostEvent?.(script);
    }
  }
}

/** A host clock the script moves forward by hand. */
export class ScriptClock implements HostClock {
  mono = 1_000_000_000n;
  real = 1_700_000_000_000_000_000n;
  monotonicNs(): bigint {
    return this.mono;
  }
  realtimeNs(): bigint {
    return this.real;
  }
  advance(ns: bigint): void {
    this.mono += ns;
    this.real += ns;
  }
}

export const quietIrq: IrqLine = { set() {}, pulse() {} };
export const discardOut: CharOut = { write() {} };
export const quietMachine: MachineControl = {
  exit() {},
  reset() {},
  powerOff() {},
  suspend() {},
  wakeEvent() {},
};
