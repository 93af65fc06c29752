// tsvmm's version, from the package.json above the running code: dist/src/cli/version.js, a bundle in dist/, or an
// installed package's node_modules/tsvmm/dist/. The command (--version, QMP's greeting) and the library use it.
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** "tsvmm 0.1.0", or "tsvmm (unknown version)" when no tsvmm package.json is found above this file. */
export function version(): string {
  for (let dir = dirname(fileURLToPath(import.meta.url)); ; dir = dirname(dir)) {
    const path = join(dir, 'package.json');
    if (existsSync(path)) {
      const pkg = JSON.parse(readFileSync(path, 'utf8')) as { name?: string; version: string };
      if (pkg.name === 'tsvmm') return `tsvmm ${pkg.version}`;
    }
    if (dirname(dir) === dir) return 'tsvmm (unknown version)';
  }
}
