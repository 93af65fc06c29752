// The header check for src/sys/socket.ts: a C program generated from socket.ts's own tables prints, as
// <sys/socket.h>, <sys/un.h> and <poll.h> define them, every constant socket.ts exports, every struct size,
// alignment, field offset and field size in SOCKET_LAYOUTS, and CMSG_LEN / CMSG_SPACE / CMSG_DATA / CMSG_NXTHDR for
// 1..SCM_MAX_FD fds. Each must equal the TypeScript value. Nothing is typed twice: a constant or field added to
// socket.ts is checked automatically.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync } from 'node:fs';
import { abiMismatches, headerValues, layoutChecks, type AbiCheck } from '../../test/support/abi-check.js';
import { testIf } from '../../test/support/skip.js';
import * as socket from './socket.js';
import { SOCKET_LAYOUTS, cmsgLen, cmsgSpace, cmsgAlign, CMSG_DATA_OFFSET, SCM_MAX_FD } from './socket.js';

const noHeader =
  existsSync('/usr/include/x86_64-linux-gnu/sys/socket.h') || existsSync('/usr/include/sys/socket.h')
    ? null
    : '<sys/socket.h> is not installed (libc6-dev)';

/** Exported numbers that are not header macros, and the C expression each is checked against instead. */
const derived: Record<string, string> = {
  UNIX_PATH_MAX: 'sizeof(((struct sockaddr_un *)0)->sun_path)',
  CMSG_DATA_OFFSET: '(size_t)(CMSG_DATA(&probe.c) - (unsigned char *)&probe.c)',
  // Ours: how many iovecs one call gathers. The check is that the kernel accepts that many (≤ IOV_MAX).
  MAX_IOVECS: `(${socket.MAX_IOVECS} <= IOV_MAX ? ${socket.MAX_IOVECS} : 0)`,
  // The kernel's SCM_MAX_FD is not in the uapi headers; socket.test.ts checks it against the kernel itself.
  SCM_MAX_FD: String(SCM_MAX_FD),
};

function checks(): AbiCheck[] {
  const list: AbiCheck[] = [];
  for (const [name, value] of Object.entries(socket)) {
    if (!/^[A-Z][A-Z0-9_]+$/.test(name) || typeof value !== 'number') continue;
    const c = derived[name] ?? name;
    list.push({ key: `const ${name}`, expected: BigInt(value), c, guard: name in derived ? undefined : name });
  }
  list.push(...layoutChecks(Object.values(SOCKET_LAYOUTS)));
  for (let n = 1; n <= SCM_MAX_FD; n++) {
    const bytes = 4 * n;
    list.push({ key: `CMSG_LEN ${n} fds`, expected: BigInt(cmsgLen(bytes)), c: `CMSG_LEN(${bytes})` });
    list.push({ key: `CMSG_SPACE ${n} fds`, expected: BigInt(cmsgSpace(bytes)), c: `CMSG_SPACE(${bytes})` });
    // Where the message after one carrying n fds starts (how receiveWithFds walks a control buffer).
    list.push({ key: `CMSG_NXTHDR ${n} fds`, expected: BigInt(cmsgAlign(cmsgLen(bytes))), c: `next_offset(${bytes})` });
    list.push({ key: `CMSG_DATA ${n} fds`, expected: BigInt(CMSG_DATA_OFFSET), c: `data_offset(${bytes})` });
  }
  return list;
}

/** Feature macros, headers, and helpers that lay out a control buffer as a sender would. */
const PREAMBLE = [
  '#define _GNU_SOURCE',
  '#include <string.h>',
  '#include <limits.h>',
  '#include <sys/socket.h>',
  '#include <sys/un.h>',
  '#include <sys/uio.h>',
  '#include <poll.h>',
  `static union { struct cmsghdr c; unsigned char bytes[2 * CMSG_SPACE(4 * ${SCM_MAX_FD})]; } probe;`,
  '/* Lays out a control buffer holding a message of `len` data bytes followed by another, as a sender would. */',
  'static struct msghdr with(size_t len) {',
  '  struct msghdr m; memset(&m, 0, sizeof m); memset(&probe, 0, sizeof probe);',
  '  m.msg_control = probe.bytes; m.msg_controllen = sizeof probe.bytes;',
  '  struct cmsghdr *c = CMSG_FIRSTHDR(&m); c->cmsg_len = CMSG_LEN(len);',
  '  c->cmsg_level = SOL_SOCKET; c->cmsg_type = SCM_RIGHTS; return m;',
  '}',
  'static size_t next_offset(size_t len) {',
  '  struct msghdr m = with(len); struct cmsghdr *c = CMSG_FIRSTHDR(&m);',
  '  struct cmsghdr *n = CMSG_NXTHDR(&m, c); return n ? (size_t)((unsigned char *)n - probe.bytes) : 0;',
  '}',
  'static size_t data_offset(size_t len) {',
  '  struct msghdr m = with(len); struct cmsghdr *c = CMSG_FIRSTHDR(&m);',
  '  return (size_t)(CMSG_DATA(c) - (unsigned char *)c);',
  '}',
];

testIf(
  test,
  noHeader,
  'socket abi: every constant, struct size, alignment, field offset and CMSG_* value matches the system headers',
  () => {
    const list = checks();
    const wrong = abiMismatches(list, headerValues({ name: 'socket-abi', preamble: PREAMBLE, checks: list }));
    assert.equal(wrong, [], `mismatches:\n${wrong.join('\n')}`);
  },
);

test('socket abi: the check covers every constant, struct and field socket.ts uses', () => {
  const keys = new Set(checks().map((c) => c.key));
  for (const name of [
    'AF_UNIX',
    'SOCK_STREAM',
    'SOCK_SEQPACKET',
    'SOCK_NONBLOCK',
    'SOCK_CLOEXEC',
    'SOL_SOCKET',
    'SCM_RIGHTS',
    'SO_PEERCRED',
    'MSG_CTRUNC',
    'MSG_TRUNC',
    'MSG_NOSIGNAL',
    'MSG_CMSG_CLOEXEC',
    'MSG_DONTWAIT',
    'SHUT_RDWR',
    'POLLIN',
    'POLLOUT',
    'POLLHUP',
    'UNIX_PATH_MAX',
    'CMSG_DATA_OFFSET',
  ]) {
    assert.ok(keys.has(`const ${name}`), name);
  }
  for (const field of [
    'sockaddr_un.sun_path',
    'msghdr.msg_iov',
    'msghdr.msg_control',
    'msghdr.msg_controllen',
    'msghdr.msg_flags',
    'iovec.iov_len',
    'cmsghdr.cmsg_type',
    'pollfd.revents',
    'ucred.gid',
  ]) {
    assert.ok(keys.has(`offsetof ${field}`), field);
  }
  assert.ok(keys.has('CMSG_SPACE 16 fds') && keys.has(`CMSG_NXTHDR ${SCM_MAX_FD} fds`));
});

test.run();
