// Running a bundled script through V8's code cache: parsing a large bundle and compiling each function the first
// time it runs costs tens of milliseconds at every start, and a restart's start-up is inside the guest's pause.
// The cache holds the bytecode of everything the previous run compiled; it is written beside the script when
// missing or rejected (a rebuilt bundle, another Node), once the caller says the interesting code has run. A
// read-only installation simply runs without it.
import { readFileSync, writeFileSync, renameSync, rmSync } from 'node:fs';
import { createRequire, Module } from 'node:module';
import { dirname } from 'node:path';
import { Script } from 'node:vm';

/** Runs the CommonJS script `file`; returns a function that stores the code cache (a no-op when it was usable). */
export function runCachedScript(file: string): () => void {
  const cacheFile = `${file}.cache`;
  const source = readFileSync(file, 'utf8');
  let cachedData: Buffer | undefined;
  try {
    cachedData = readFileSync(cacheFile);
  } catch {
    /* first start */
  }
  const script = new Script(Module.wrap(source), { filename: file, cachedData });
  let needsCache = cachedData === undefined || script.cachedDataRejected === true;
  const save = () => {
    if (!needsCache) return;
    needsCache = false;
    const tmp = `${cacheFile}.${process.pid}.${Math.random().toString(36).slice(2)}`;
    try {
      writeFileSync(tmp, script.createCachedData());
      renameSync(tmp, cacheFile);
    } catch {
      rmSync(tmp, { force: true });
    }
  };
  (globalThis as { __tsvmmSaveCodeCache?: () => void }).__tsvmmSaveCodeCache = save;
  const module = { exports: {} };
  (script.runInThisContext() as (...args: unknown[]) => void).call(
    module.exports,
    module.exports,
    createRequire(file),
    module,
    file,
    dirname(file),
  );
  return save;
}
