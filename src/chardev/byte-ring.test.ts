// The host-input ring between the main thread and the I/O thread: bounded, in order across the wrap, and every
// write wakes the consumer's epoll through the eventfd.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as libc from '../sys/libc.js';
import { ByteRing } from './byte-ring.js';

const bytes = (...values: number[]) => Uint8Array.from(values);

test('byte ring: takes only what fits, gives it back in order across the wrap, and counts every write on its eventfd', () => {
  const producer = ByteRing.create(8);
  const consumer = ByteRing.attach(producer.init);
  try {
    assert.is(producer.write(bytes(1, 2, 3, 4, 5, 6)), 6);
    assert.is(producer.write(bytes(7, 8, 9, 10)), 2, 'only two bytes of room');
    assert.is(producer.write(bytes(11)), 0, 'full');
    assert.is(consumer.length, 8);
    assert.equal(consumer.peek(), bytes(1, 2, 3, 4, 5, 6, 7, 8));
    consumer.consume(5);
    assert.is(producer.write(bytes(9, 10, 11, 12)), 4, 'room again, across the end of the buffer');
    // The waiting bytes run past the end of the buffer: peek gives them in two pieces, in order.
    const first = consumer.peek();
    assert.equal(first, bytes(6, 7, 8));
    consumer.consume(first.length);
    assert.equal(consumer.peek(), bytes(9, 10, 11, 12));
    consumer.consume(4);
    assert.is(consumer.length, 0);
    assert.equal(consumer.peek(), new Uint8Array(0));
    const counter = new BigUint64Array(1);
    libc.read(producer.fd, counter);
    assert.is(counter[0], 3n, 'three writes that took bytes, three wake-ups');
  } finally {
    producer.close();
  }
});

test('byte ring: consuming more than is there, or a capacity that is not a power of two, is refused', () => {
  const ring = ByteRing.create(4);
  try {
    ring.write(bytes(1, 2));
    assert.throws(() => ring.consume(3), /consume 3 of 2/);
    assert.throws(() => ByteRing.create(6), /not a power of two/);
  } finally {
    ring.close();
  }
});

test.run();
