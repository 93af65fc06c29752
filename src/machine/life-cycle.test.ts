// The run-state table: the moves tsvmm makes are allowed, others are refused with both states named, and the
// machine can end from any state but an internal error is final.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { LifeCycle, RunStateTransitionError, type RunState } from './life-cycle.js';

const ALL: RunState[] = [
  'prelaunch',
  'running',
  'paused',
  'inmigrate',
  'finish-migrate',
  'postmigrate',
  'suspended',
  'shutdown',
  'guest-panicked',
  'internal-error',
];

/** A life cycle taken along `path` from prelaunch. */
function through(...path: RunState[]): LifeCycle {
  const life = new LifeCycle();
  for (const state of path) life.to(state);
  return life;
}

test('life cycle: a new machine is in prelaunch, not running, not ending', () => {
  const life = new LifeCycle();
  assert.is(life.state, 'prelaunch');
  assert.is(life.running, false);
  assert.is(life.ending, false);
});

test('life cycle: run, stop, save and hand over: prelaunch → running → paused → finish-migrate → postmigrate', () => {
  const life = through('running', 'paused', 'finish-migrate', 'postmigrate');
  assert.is(life.state, 'postmigrate');
});

test('life cycle: a saved VM must not run here again (postmigrate → running is refused and the state stays)', () => {
  const life = through('running', 'finish-migrate', 'postmigrate');
  try {
    life.to('running');
    assert.unreachable('postmigrate → running was allowed');
  } catch (e) {
    assert.instance(e, RunStateTransitionError);
    assert.is((e as Error).message, "invalid run state transition: 'postmigrate' -> 'running'");
  }
  assert.is(life.state, 'postmigrate');
});

test('life cycle: S3 suspend and wake-up, and a guest stopped by its power-off or panic resets to prelaunch', () => {
  assert.is(through('running', 'suspended', 'paused', 'running').state, 'running');
  assert.is(through('running', 'shutdown', 'prelaunch', 'running').state, 'running');
  assert.is(through('running', 'guest-panicked', 'prelaunch').state, 'prelaunch');
});

test('life cycle: -incoming waits in inmigrate, then runs, stays paused or suspended as the checkpoint says', () => {
  for (const next of ['running', 'paused', 'suspended'] as const) assert.is(through('inmigrate', next).state, next);
  assert.throws(() => through('inmigrate', 'finish-migrate'), /invalid run state transition/);
});

/** A way from prelaunch to each state. */
const WAY: Record<RunState, RunState[]> = {
  prelaunch: [],
  running: ['running'],
  paused: ['running', 'paused'],
  inmigrate: ['inmigrate'],
  'finish-migrate': ['running', 'finish-migrate'],
  postmigrate: ['running', 'finish-migrate', 'postmigrate'],
  suspended: ['running', 'suspended'],
  shutdown: ['running', 'shutdown'],
  'guest-panicked': ['running', 'guest-panicked'],
  'internal-error': ['running', 'internal-error'],
};

test('life cycle: staying in a state is always allowed', () => {
  for (const state of ALL) {
    const life = through(...WAY[state]);
    life.to(state);
    assert.is(life.state, state);
  }
});

test('life cycle: every state but an internal error can end in shutdown; an internal error is final', () => {
  for (const state of ALL) {
    const life = through(...WAY[state]);
    assert.not.throws(() => life.check('internal-error'), `${state} → internal-error`);
    if (state === 'internal-error') {
      for (const next of ALL.filter((s) => s !== state))
        assert.throws(() => life.check(next), /invalid run state transition/);
    } else {
      life.to('shutdown');
      assert.is(life.state, 'shutdown');
    }
  }
});

test('life cycle: ending is marked once', () => {
  const life = new LifeCycle();
  assert.is(life.beginEnding(), true);
  assert.is(life.beginEnding(), false);
  assert.is(life.ending, true);
});

test.run();
