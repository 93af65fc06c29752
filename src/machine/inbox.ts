// Where the threads' reports and the main-thread devices' requests reach the machine. The builder starts threads
// and devices before the machine exists; anything they report that early (a thread that crashed while starting)
// waits here until the machine attaches its handler.
import type { WakeEventSource } from '../bus/types.js';
import type { ThreadReport } from './threads.js';

export type InboxMessage = ThreadReport | { type: 'wake'; source: WakeEventSource };

export class MachineInbox {
  private handler: ((message: InboxMessage) => void) | null = null;
  private readonly early: InboxMessage[] = [];

  readonly post = (message: InboxMessage): void => {
    if (this.handler) this.handler(message);
    else this.early.push(message);
  };

  /** Hands every message to `handler`, those that arrived before first. */
  attach(handler: (message: InboxMessage) => void): void {
    this.handler = handler;
    for (const message of this.early.splice(0)) handler(message);
  }
}
