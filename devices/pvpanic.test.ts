import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { newRecord, recordBytes } from '../cpr/vmstate/vmstate.js';
import type { MachineControl } from '../src/bus/types.js';
import { ExitStatus } from '../src/util/exit-status.js';
import {
  Pvpanic,
  pvpanicState,
  PVPANIC_DEFAULT_IOPORT,
  PVPANIC_PANICKED,
  PVPANIC_CRASH_LOADED,
  PVPANIC_SUPPORTED_EVENTS,
} from './pvpanic.js';

class FakeMachine implements MachineControl {
  exits: { status: number; reason: string }[] = [];
  exit(status: number, reason: string): void {
    this.exits.push({ status, reason });
  }
  reset(): void {
    throw new Error('unexpected reset');
  }
  powerOff(): void {
    throw new Error('unexpected power-off');
  }
  suspend(): void {
    throw new Error('unexpected suspend');
  }
  wakeEvent(): void {
    throw new Error('unexpected wake-up event');
  }
}

function setup() {
  const state = newRecord(pvpanicState);
  const machine = new FakeMachine();
  const log: string[] = [];
  const dev = new Pvpanic(state, machine, (line) => log.push(line));
  dev.reset();
  return { state, machine, log, dev };
}

test('pvpanic: QEMU defaults are port 0x505 and events PANICKED (bit 0) | CRASH_LOADED (bit 1)', () => {
  assert.is(PVPANIC_DEFAULT_IOPORT, 0x505);
  assert.is(PVPANIC_PANICKED, 1);
  assert.is(PVPANIC_CRASH_LOADED, 2);
  assert.is(PVPANIC_SUPPORTED_EVENTS, 3);
});

test('pvpanic: the panic status is ExitStatus.guestPanic (126), never an isa-debug-exit status (odd)', () => {
  const { dev, machine } = setup();
  dev.write(0, 1, PVPANIC_PANICKED);
  assert.equal(
    machine.exits.map((e) => e.status),
    [ExitStatus.guestPanic],
  );
  assert.is(ExitStatus.guestPanic, 126);
  assert.is(ExitStatus.guestPanic % 2, 0);
});

test('pvpanic: a read returns the supported events, at any width, and changes nothing', () => {
  const { dev, machine, state } = setup();
  assert.is(dev.read(0, 1), 3);
  assert.is(dev.read(0, 1), 3);
  assert.is(dev.read(0, 2) & 0xff, 3);
  assert.is(machine.exits.length, 0);
  assert.is(state.lastEvent, 0);
});

test('pvpanic: writing PANICKED (1) ends the VM with status 126 and a reason naming the panic', () => {
  const { dev, machine, state } = setup();
  dev.write(0, 1, PVPANIC_PANICKED);
  assert.is(machine.exits.length, 1);
  assert.is(machine.exits[0].status, 126);
  assert.match(machine.exits[0].reason, /guest panicked/);
  assert.is(state.lastEvent, 1);
});

test('pvpanic: writing CRASH_LOADED (2) is only noted: the guest runs on into its crash kernel', () => {
  const { dev, machine, state, log } = setup();
  dev.write(0, 1, PVPANIC_CRASH_LOADED);
  assert.is(machine.exits.length, 0);
  assert.is(log.length, 1);
  assert.match(log[0], /crash kernel/);
  assert.is(state.lastEvent, 2);
  assert.ok(state.crashLoaded);
});

test('pvpanic: PANICKED wins when both bits are written; unknown bits are ignored', () => {
  const both = setup();
  both.dev.write(0, 1, PVPANIC_PANICKED | PVPANIC_CRASH_LOADED);
  assert.equal(
    both.machine.exits.map((e) => e.status),
    [126],
  );
  assert.not.ok(both.state.crashLoaded);

  const unknown = setup();
  unknown.dev.write(0, 1, 0xfc);
  unknown.dev.write(0, 1, 0x04);
  assert.is(unknown.machine.exits.length, 0);
  assert.not.ok(unknown.state.crashLoaded);
  assert.is(unknown.state.lastEvent, 0x04);

  const highBits = setup();
  highBits.dev.write(0, 1, 0x101); // only the port's byte counts
  assert.is(highBits.machine.exits.length, 1);
  assert.is(highBits.state.lastEvent, 1);
});

test('pvpanic: writing 0 does nothing', () => {
  const { dev, machine, state } = setup();
  dev.write(0, 1, 0);
  assert.is(machine.exits.length, 0);
  assert.not.ok(state.crashLoaded);
  assert.is(state.lastEvent, 0);
});

test('pvpanic: reset returns the record to power-on state (all zero)', () => {
  const { dev, state } = setup();
  dev.write(0, 1, PVPANIC_CRASH_LOADED);
  assert.ok(recordBytes(state).some((b) => b !== 0));
  dev.reset();
  assert.is(state.lastEvent, 0);
  assert.not.ok(state.crashLoaded);
  assert.ok(recordBytes(state).every((b) => b === 0));
  assert.is(dev.read(0, 1), PVPANIC_SUPPORTED_EVENTS, 'still offers its events after a reset');
});

test('pvpanic: a second instance over the same record (another thread) sees the state', () => {
  const { dev, state, machine } = setup();
  const other = new Pvpanic(state, machine);
  dev.write(0, 1, PVPANIC_CRASH_LOADED);
  assert.ok(other.state.crashLoaded);
  assert.is(other.state.lastEvent, 2);
});

test.run();
