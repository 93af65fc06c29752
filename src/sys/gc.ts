// A full garbage collection on demand, run just before a checkpoint's pause so that a collection of the warm-up's
// garbage does not land inside it. Node only exposes gc() with --expose-gc; V8 accepts the flag at run time, and
// a fresh context then carries the function.
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

let gc: (() => void) | null | undefined;

export function collectGarbage(): void {
  if (gc === undefined) {
    try {
      setFlagsFromString('--expose-gc');
      gc = runInNewContext('gc') as () => void;
    } catch {
      gc = null;
    }
  }
  gc?.();
}
