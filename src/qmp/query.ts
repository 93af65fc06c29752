// One QMP command against a running tsvmm (or QEMU), for tsvmm's own small client commands: connect, read the
// greeting, negotiate, execute, return the result or throw a QmpQueryError with the server's error.
import net from 'node:net';
import { SetupError } from '../util/setup-error.js';

export class QmpQueryError extends SetupError {
  override readonly name = 'QmpQueryError';
}

export function queryQmp(
  path: string,
  command: string,
  args?: Record<string, unknown>,
  timeoutMs = 10_000,
): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const socket = net.createConnection(path);
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new QmpQueryError(`${path}: no answer within ${timeoutMs} ms`));
    }, timeoutMs);
    let buffer = '';
    let step = 0;
    const done = (fn: () => void) => {
      clearTimeout(timer);
      socket.end();
      fn();
    };
    socket.setEncoding('utf8');
    socket.on('error', (e) => done(() => reject(new QmpQueryError(`${path}: ${e.message}`))));
    socket.on('data', (text: string) => {
      buffer += text;
      for (let end = buffer.indexOf('\n'); end >= 0; end = buffer.indexOf('\n')) {
        const line = buffer.slice(0, end).trim();
        buffer = buffer.slice(end + 1);
        if (!line) continue;
        const msg = JSON.parse(line) as {
          QMP?: unknown;
          return?: unknown;
          error?: { class: string; desc: string };
          event?: string;
        };
        if (msg.event) continue;
        if (msg.error) return done(() => reject(new QmpQueryError(`${command}: ${msg.error!.desc}`)));
        if (step === 0 && msg.QMP) {
          step = 1;
          socket.write('{"execute": "qmp_capabilities"}\n');
        } else if (step === 1) {
          step = 2;
          socket.write(`${JSON.stringify(args ? { execute: command, arguments: args } : { execute: command })}\n`);
        } else if (step === 2) return done(() => resolve(msg.return));
      }
    });
  });
}
