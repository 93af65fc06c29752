// The host end of the Linux devices scenario's nc transfers (test/support/linux-scenarios.ts), run inside the tap's
// network namespace: `ip netns exec NS node dist/test/support/linux-net-peer.js HOST_IP FILE`.
//   upload port:   reads what the guest sends until it half-closes, answers `N bytes, md5 X` and closes;
//   download port: sends FILE and closes (the guest's nc ends when it sees the close).
// Each finished transfer is one JSON line on stdout; the process exits after both (or when killed).
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { NET_DOWNLOAD_PORT, NET_UPLOAD_PORT } from './linux-scenarios.js';

const [hostIp, file] = process.argv.slice(2);
if (!hostIp || !file) {
  console.error('usage: linux-net-peer HOST_IP FILE');
  process.exit(2);
}
const download = readFileSync(file);
let done = 0;
const finished = (line: Record<string, unknown>) => {
  console.log(JSON.stringify(line));
  if (++done === 2) process.exit(0);
};

// allowHalfOpen: the guest's nc shuts its sending side down at the end of its input but still reads the reply.
const upload = createServer({ allowHalfOpen: true }, (socket) => {
  const hash = createHash('md5');
  let bytes = 0;
  socket.on('data', (d: Buffer) => {
    bytes += d.length;
    hash.update(d);
  });
  socket.on('end', () => {
    const md5 = hash.digest('hex');
    socket.end(`${bytes} bytes, md5 ${md5}\n`);
    upload.close();
    finished({ upload: { bytes, md5 } });
  });
});
const down = createServer({ allowHalfOpen: true }, (socket) => {
  socket.on('data', () => {});
  socket.end(download, () => {
    down.close();
    finished({ download: { bytes: download.length } });
  });
});
let listening = 0;
const ready = () => {
  if (++listening === 2) console.log(JSON.stringify({ listening: [NET_UPLOAD_PORT, NET_DOWNLOAD_PORT] }));
};
upload.listen(NET_UPLOAD_PORT, hostIp, ready);
down.listen(NET_DOWNLOAD_PORT, hostIp, ready);
