// cpr-transfer's channel frames (cpr/flows/channel.ts) as a hostile or broken peer sends them: the input goes down
// an AF_UNIX stream socket, in two writes split where its first byte says (the second write carrying an fd now and
// then, as SCM_RIGHTS), then the peer closes. The receiver reads messages until the channel refuses; the only
// refusal allowed is a CprChannelError, and every fd that arrived is closed by the end (the channel's or ours).
import { readdirSync } from 'node:fs';
import { CprChannel, CprChannelError, FRAME_HEAD_BYTES, FRAME_MAGIC } from '../../cpr/flows/channel.js';
import { close, EFD_CLOEXEC, eventfd } from '../../src/sys/libc.js';
import { SOCK_STREAM, sendWithFds, socketPair } from '../../src/sys/socket.js';
import { invariant, refusedOnlyWith } from '../support/contract.js';

export const instrumented = ['cpr/flows/channel.js'];

const LIMITS = { maxHeaderBytes: 4096, maxPayloadBytes: 8192, maxFds: 4 };
const openFds = () => readdirSync('/proc/self/fd').length;

export function fuzz(data: Uint8Array): void {
  const before = openFds();
  const [ours, peer] = socketPair({ type: SOCK_STREAM, nonBlocking: true });
  const control = data[0] ?? 0;
  const body = data.subarray(1);
  const split = Math.min(body.length, control >> 1);
  let channel: CprChannel | null = null;
  try {
    if (split > 0) sendWithFds(peer, [body.subarray(0, split)]);
    if (body.length > split) {
      const passed = control & 1 ? [eventfd(0, EFD_CLOEXEC)] : [];
      sendWithFds(peer, [body.subarray(split)], passed);
      for (const fd of passed) close(fd); // the kernel holds its own copy in flight
    }
    close(peer);
    channel = CprChannel.fromFd(ours, { limits: LIMITS });
    const ch = channel;
    refusedOnlyWith([CprChannelError], () => {
      for (;;) for (const fd of ch.receiveSync(0, 0).fds) close(fd);
    });
  } finally {
    if (channel) channel.close();
    else close(ours);
  }
  invariant(openFds() === before, `fds open before ${before}, after ${openFds()}`);
}

function frame(type: string, header: unknown, payload: Uint8Array): Uint8Array {
  const t = new TextEncoder().encode(type);
  const h = header === undefined ? new Uint8Array(0) : new TextEncoder().encode(JSON.stringify(header));
  const out = new Uint8Array(FRAME_HEAD_BYTES + t.length + h.length + payload.length);
  const v = new DataView(out.buffer);
  v.setUint32(0, FRAME_MAGIC, true);
  v.setUint16(4, t.length, true);
  v.setUint16(6, 0, true);
  v.setUint32(8, h.length, true);
  v.setUint32(12, payload.length, true);
  out.set(t, FRAME_HEAD_BYTES);
  out.set(h, FRAME_HEAD_BYTES + t.length);
  out.set(payload, FRAME_HEAD_BYTES + t.length + h.length);
  return out;
}

export const seeds = (): Uint8Array[] => {
  const hello = frame('hello', { version: 1, pid: 123 }, new Uint8Array(0));
  const state = frame(
    'state',
    { sections: 3 },
    Uint8Array.from({ length: 200 }, (_, i) => i),
  );
  const fdFrame = frame('ram-fds', { regions: [{ gpa: 0, size: 4096 }] }, new Uint8Array(0));
  fdFrame[6] = 1; // one fd travels with this head
  return [
    Uint8Array.from([0, ...hello, ...state]),
    Uint8Array.from([(hello.length << 1) | 1, ...hello, ...fdFrame, ...frame('done', undefined, new Uint8Array(0))]),
    Uint8Array.from([20, ...state.subarray(0, 100)]), // truncated mid-payload
  ];
};
