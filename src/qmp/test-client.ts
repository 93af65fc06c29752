// A raw QMP test client for the tests beside this file: it speaks bytes, not a library's idea of QMP, so tests can
// send anything (split, batched, malformed) and see exactly the lines the server writes.
import net from 'node:net';

export interface RawClient {
  readonly socket: net.Socket;
  /** Writes bytes or text as they are. */
  send(data: string | Uint8Array): void;
  /** The next line the server sent (without "\r\n"), parsed as JSON. */
  next(timeoutMs?: number): Promise<Record<string, unknown>>;
  /** The next line, raw. */
  nextLine(timeoutMs?: number): Promise<string>;
  /** Sends one request line and returns the next message that is not an event. */
  execute(command: string, args?: Record<string, unknown>, id?: unknown): Promise<Record<string, unknown>>;
  /** Resolves true if no line arrives within `ms`. */
  silentFor(ms: number): Promise<boolean>;
  /** Everything received so far, as text. */
  readonly received: string;
  readonly closed: boolean;
  close(): void;
}

export async function connectRaw(path: string): Promise<RawClient> {
  const socket = net.createConnection(path);
  let buffer = '';
  let received = '';
  let closed = false;
  const lines: string[] = [];
  const waiters: Array<() => void> = [];
  const wake = () => {
    for (const w of waiters.splice(0)) w();
  };
  socket.on('data', (chunk) => {
    const text = chunk.toString('latin1');
    received += text;
    buffer += text;
    for (let end = buffer.indexOf('\r\n'); end >= 0; end = buffer.indexOf('\r\n')) {
      lines.push(buffer.slice(0, end));
      buffer = buffer.slice(end + 2);
    }
    wake();
  });
  socket.on('close', () => {
    closed = true;
    wake();
  });
  socket.on('error', () => {});
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });

  const nextLine = async (timeoutMs = 5000): Promise<string> => {
    const deadline = Date.now() + timeoutMs;
    while (lines.length === 0) {
      if (closed) throw new Error(`connection closed; received so far: ${JSON.stringify(received)}`);
      const left = deadline - Date.now();
      if (left <= 0)
        throw new Error(
          `no line from the server within ${timeoutMs} ms; received so far: ${JSON.stringify(received.slice(-500))}`,
        );
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    return lines.shift() as string;
  };
  const next = async (timeoutMs?: number) => JSON.parse(await nextLine(timeoutMs)) as Record<string, unknown>;
  const client: RawClient = {
    socket,
    send: (data) => {
      socket.write(data);
    },
    next,
    nextLine,
    async execute(command, args, id) {
      const request: Record<string, unknown> = { execute: command };
      if (args !== undefined) request.arguments = args;
      if (id !== undefined) request.id = id;
      socket.write(`${JSON.stringify(request)}\n`);
      for (;;) {
        const message = await next();
        if (!('event' in message)) return message;
      }
    },
    async silentFor(ms) {
      if (lines.length > 0) return false;
      await new Promise((resolve) => setTimeout(resolve, ms));
      return lines.length === 0;
    },
    get received() {
      return received;
    },
    get closed() {
      return closed;
    },
    close: () => {
      socket.destroy();
    },
  };
  return client;
}
