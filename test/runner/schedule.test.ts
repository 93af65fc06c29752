// The runner's schedule: Linux-guest files never run two at once, start first, and never leave a slot idle while
// another file could run.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { bootsLinux, nextFile, runOrder, runsAlone } from './schedule.js';

test('schedule: a file named linux-*.test.js boots a Linux guest; others do not', () => {
  assert.ok(bootsLinux('/x/dist/src/machine/linux-cpr.test.js'));
  assert.ok(bootsLinux('src/machine/linux-devices.test.js'));
  assert.not.ok(bootsLinux('/x/dist/cpr/flows/cpr.test.js'));
  assert.not.ok(bootsLinux('/x/dist/src/machine/machine.test.js'));
  assert.not.ok(bootsLinux('/x/dist/linux-stuff/cpr.test.js'), 'the directory name does not count');
});

test('schedule: Linux-guest files go first, each group in its given order', () => {
  assert.equal(runOrder(['a.test.js', 'linux-b.test.js', 'c.test.js', 'linux-a.test.js']), [
    'linux-b.test.js',
    'linux-a.test.js',
    'a.test.js',
    'c.test.js',
  ]);
});

test('schedule: with a Linux-guest file running, a free slot skips the others and takes the next other file', () => {
  assert.is(nextFile(['linux-b.test.js', 'c.test.js'], ['linux-a.test.js']), 1);
  assert.is(nextFile(['linux-b.test.js', 'c.test.js'], ['x.test.js']), 0);
  assert.is(nextFile(['c.test.js'], []), 0);
});

test('schedule: only Linux-guest files left and one running — the slot waits (-1); nothing left — -1', () => {
  assert.is(nextFile(['linux-b.test.js'], ['linux-a.test.js']), -1);
  assert.is(nextFile([], ['linux-a.test.js']), -1);
});

test('schedule: linux-cpr (and the transfer soak) run alone — nothing starts beside it, and it waits for the other slot to empty', () => {
  assert.ok(runsAlone('/x/dist/src/machine/linux-cpr.test.js'));
  assert.not.ok(runsAlone('/x/dist/src/machine/linux-devices.test.js'));
  assert.ok(runsAlone('/x/dist/examples/guests/transfer-soak.test.js'), 'the soak runs alone too');
  assert.is(nextFile(['a.test.js'], ['/d/src/machine/linux-cpr.test.js']), -1);
  assert.is(
    nextFile(['/d/src/machine/linux-cpr.test.js', 'a.test.js'], ['b.test.js']),
    1,
    'another file takes the slot',
  );
  assert.is(nextFile(['/d/src/machine/linux-cpr.test.js'], ['b.test.js']), -1, 'it waits for b');
  assert.is(nextFile(['/d/src/machine/linux-cpr.test.js', 'a.test.js'], []), 0);
});

test.run();
