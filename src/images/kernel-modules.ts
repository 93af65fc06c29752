// Kernel modules for an initramfs: find modules by name in an unpacked kernel's module tree
// (lib/modules/VERSION/, e.g. from Debian's linux-image-*.deb) and put them with everything they depend on in
// loading order, so a plain `insmod` of each, in turn, works without depmod's modules.dep. Dependencies come from
// each module's own .modinfo section ("depends=a,b"); modules listed in modules.builtin are in the kernel already.
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, join, sep } from 'node:path';
import { sectionBytes } from './elf64.js';

/** A module file bound for the archive: `path` is its place there (lib/modules/VERSION/kernel/…/name.ko). */
export interface InitramfsModule {
  /** Archive path; may be left out when `source` contains "lib/modules/" (the path is then taken from there). */
  path?: string;
  /** Host file to copy. */
  source?: string;
  /** Or the bytes themselves. */
  data?: Uint8Array;
}

export class KernelModuleError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'KernelModuleError';
  }
}

/** The kernel's own spelling rule: '-' and '_' are the same in module names. */
export const moduleName = (name: string): string => basename(name).replace(/\.ko$/, '').replace(/-/g, '_');

/** The key=value strings of a module's .modinfo section, as a multimap. */
export function moduleInfo(bytes: Uint8Array, what: string): Map<string, string[]> {
  const section = sectionBytes(bytes, '.modinfo', what);
  if (section === null) throw new KernelModuleError(`${what} has no .modinfo section (not a kernel module?)`);
  const info = new Map<string, string[]>();
  for (const item of Buffer.from(section).toString('utf8').split('\0')) {
    const eq = item.indexOf('=');
    if (eq <= 0) continue;
    const key = item.slice(0, eq);
    info.set(key, [...(info.get(key) ?? []), item.slice(eq + 1)]);
  }
  return info;
}

/** The names a module depends on (its .modinfo "depends=" line), normalised. */
export function moduleDepends(bytes: Uint8Array, what: string): string[] {
  return (moduleInfo(bytes, what).get('depends') ?? [])
    .flatMap((d) => d.split(','))
    .filter(Boolean)
    .map(moduleName);
}

/** lib/modules/VERSION of `dir`: `dir` itself when it holds kernel/ or modules.order, else its single lib/modules/* entry. */
export function moduleTreeRoot(dir: string): string {
  if (existsSync(join(dir, 'kernel')) || existsSync(join(dir, 'modules.order'))) return dir;
  const under = join(dir, 'lib', 'modules');
  const versions = existsSync(under) ? readdirSync(under).filter((v) => statSync(join(under, v)).isDirectory()) : [];
  if (versions.length === 1) return join(under, versions[0]);
  throw new KernelModuleError(
    versions.length === 0
      ? `'${dir}' is not a kernel module tree (no kernel/ or lib/modules/VERSION/ in it)`
      : `'${dir}' holds several kernel versions (${versions.join(', ')}): name one, e.g. ${join(under, versions[0])}`,
  );
}

const COMPRESSED = /\.ko\.(xz|zst|gz)$/;

/**
 * `names` and their dependencies from the module tree at `dir`, each before the modules that need it. Modules
 * built into the kernel (modules.builtin) are left out and reported. Unknown names are an error that says which
 * module wanted them.
 */
export function resolveKernelModules(
  dir: string,
  names: readonly string[],
): { modules: Required<Pick<InitramfsModule, 'path' | 'source'>>[]; builtin: string[] } {
  const root = moduleTreeRoot(dir);
  const version = basename(root);
  const files = new Map<string, string>();
  const compressed = new Set<string>();
  for (const rel of readdirSync(root, { recursive: true, encoding: 'utf8' }).sort()) {
    if (rel.endsWith('.ko')) files.set(moduleName(rel), rel);
    else if (COMPRESSED.test(rel)) compressed.add(moduleName(rel.replace(COMPRESSED, '.ko')));
  }
  const builtinList = join(root, 'modules.builtin');
  const builtinNames = new Set(
    existsSync(builtinList) ? readFileSync(builtinList, 'utf8').split('\n').filter(Boolean).map(moduleName) : [],
  );

  const ordered: { path: string; source: string }[] = [];
  const builtin: string[] = [];
  const state = new Map<string, 'visiting' | 'done'>();
  const visit = (name: string, wantedBy: string | null): void => {
    if (state.get(name) === 'done') return;
    if (state.get(name) === 'visiting')
      throw new KernelModuleError(`kernel modules: dependency cycle through '${name}'`);
    const rel = files.get(name);
    if (rel === undefined) {
      if (builtinNames.has(name)) {
        if (!builtin.includes(name)) builtin.push(name);
        state.set(name, 'done');
        return;
      }
      const by = wantedBy ? ` (needed by ${wantedBy})` : '';
      if (compressed.has(name))
        throw new KernelModuleError(
          `kernel modules: '${name}'${by} is compressed in ${root}; decompress it (xz -d / zstd -d) first`,
        );
      throw new KernelModuleError(`kernel modules: no module '${name}'${by} in ${root}`);
    }
    state.set(name, 'visiting');
    const source = join(root, rel);
    for (const dep of moduleDepends(readFileSync(source), source)) visit(dep, name);
    state.set(name, 'done');
    ordered.push({ source, path: ['lib', 'modules', version, ...rel.split(sep)].join('/') });
  };
  for (const n of names) visit(moduleName(n), null);
  return { modules: ordered, builtin };
}

/** The archive path of a module given only by its host path: the part from "lib/modules/" on. */
export function modulePathFromSource(source: string): string | null {
  const norm = source.split(sep).join('/');
  const at = norm.lastIndexOf('lib/modules/');
  return at < 0 || (at > 0 && norm[at - 1] !== '/') ? null : norm.slice(at);
}
