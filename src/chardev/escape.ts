// QEMU's terminal escape (its mux chardev): on a stdio terminal, Ctrl-a starts a two-key command.
//   Ctrl-a x        quit
//   Ctrl-a h (or ?) print the help
//   Ctrl-a Ctrl-a   send one Ctrl-a to the guest
// Any other key after Ctrl-a is swallowed, as in QEMU (its other commands — monitor switch, break, timestamps,
// save — have no meaning here). A Ctrl-a at the end of one read waits for the next read.

export const CTRL_A = 0x01;

export const ESCAPE_HELP = 'C-a h    print this help\r\n' + 'C-a x    exit the emulator\r\n' + 'C-a C-a  send C-a\r\n';

export interface EscapeActions {
  quit(): void;
  help(): void;
}

export class EscapeFilter {
  /** True after a Ctrl-a whose command key has not arrived yet. */
  private escaped = false;

  constructor(private readonly actions: EscapeActions) {}

  /** The bytes of `input` meant for the guest (the same array when it holds no escape). Runs the commands. */
  filter(input: Uint8Array): Uint8Array {
    if (!this.escaped && input.indexOf(CTRL_A) < 0) return input;
    const out = new Uint8Array(input.length);
    let n = 0;
    for (let i = 0; i < input.length; i++) {
      const byte = input[i];
      if (!this.escaped) {
        if (byte === CTRL_A) this.escaped = true;
        else out[n++] = byte;
        continue;
      }
      this.escaped = false;
      switch (byte) {
        case CTRL_A:
          out[n++] = CTRL_A;
          break;
        case 0x78:
          /* x */ this.actions.quit();
          break;
        case 0x68: /* h */
        case 0x3f:
          /* ? */ this.actions.help();
          break;
        default:
          break;
      }
    }
    return out.subarray(0, n);
  }
}
