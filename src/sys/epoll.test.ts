import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as libc from './libc.js';
import { Epoll, EPOLLIN, EPOLLONESHOT } from './epoll.js';

test("epoll: a written eventfd is reported readable with the caller's data; a quiet one times out", () => {
  const ep = new Epoll(8);
  const a = libc.eventfd(0, libc.EFD_CLOEXEC | libc.EFD_NONBLOCK);
  const b = libc.eventfd(0, libc.EFD_CLOEXEC | libc.EFD_NONBLOCK);
  try {
    ep.add(a, EPOLLIN, 7);
    ep.add(b, EPOLLIN, 0x1_0000_0001);
    assert.equal(ep.wait(0), []);
    libc.write(b, new BigUint64Array([1n]));
    const events = ep.wait(1000);
    assert.equal(events, [{ events: EPOLLIN, data: 0x1_0000_0001 }], 'data is a full 64-bit value (packed struct)');
    const started = Date.now();
    libc.read(b, new BigUint64Array(1));
    assert.equal(ep.wait(30), []);
    assert.ok(Date.now() - started >= 25, 'waited for the timeout');
    ep.remove(b);
    assert.throws(() => ep.remove(b), /epoll_ctl.*ENOENT/);
  } finally {
    ep.close();
    libc.close(a);
    libc.close(b);
  }
});

test('epoll: a one-shot fd is reported once until modified again', () => {
  const ep = new Epoll();
  const fd = libc.eventfd(0, libc.EFD_CLOEXEC | libc.EFD_NONBLOCK);
  try {
    ep.add(fd, EPOLLIN | EPOLLONESHOT, 3);
    libc.write(fd, new BigUint64Array([1n]));
    assert.is(ep.wait(100).length, 1);
    assert.equal(ep.wait(0), [], 'still readable, but disarmed');
    ep.modify(fd, EPOLLIN | EPOLLONESHOT, 3);
    assert.equal(ep.wait(100), [{ events: EPOLLIN, data: 3 }]);
  } finally {
    ep.close();
    libc.close(fd);
  }
});

test.run();
