import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { newRecord } from '../cpr/vmstate/vmstate.js';
import type { MachineControl } from '../src/bus/types.js';
import { DebugExit, debugExitState, debugExitStatus, DEBUG_EXIT_IOBASE, DEBUG_EXIT_IOSIZE } from './debug-exit.js';

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
  const state = newRecord(debugExitState);
  const machine = new FakeMachine();
  const dev = new DebugExit(state, machine);
  dev.reset();
  return { state, machine, dev };
}

test('debug-exit: QEMU defaults are iobase 0xf4, iosize 4', () => {
  assert.is(DEBUG_EXIT_IOBASE, 0xf4);
  assert.is(DEBUG_EXIT_IOSIZE, 4);
});

test('debug-exit: writing 0x21 ends the VM with status 67', () => {
  const { dev, machine, state } = setup();
  dev.write(0, 1, 0x21);
  assert.is(machine.exits.length, 1);
  assert.is(machine.exits[0].status, 67);
  assert.match(machine.exits[0].reason, /0x21/);
  assert.is(state.lastValue, 0x21);
  assert.is(state.lastSize, 1);
});

test('debug-exit: the value is masked to the access size', () => {
  const { dev, machine } = setup();
  dev.write(0, 1, 0x1ff);
  dev.write(0, 2, 0x1ffff);
  dev.write(0, 2, 0x1234);
  dev.write(0, 4, 0xffffffff);
  dev.write(0, 4, 0);
  assert.equal(
    machine.exits.map((e) => e.status),
    [0x1ff, 0x1ffff, 0x2469, 0x1ffffffff, 1],
  );
});

test('debug-exit: statuses are always odd and computed without 32-bit overflow', () => {
  assert.is(debugExitStatus(0x80000000, 4), 0x100000001);
  assert.is(debugExitStatus(0, 1) % 2, 1);
  assert.is(debugExitStatus(0x100, 1), 1, 'outb keeps only the low byte');
});

test('debug-exit: reads return 0', () => {
  const { dev } = setup();
  assert.is(dev.read(0, 1), 0);
  assert.is(dev.read(0, 4), 0);
});

test.run();
