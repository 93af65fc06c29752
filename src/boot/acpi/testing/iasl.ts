// Running the ACPICA tools (Debian `acpica-tools`: iasl, acpiexec) on tables from tests. Every call works in a
// fresh temporary directory and returns the tool's whole output, so a test can assert "no errors, no warnings,
// no incorrect checksum" on exactly what the tool printed.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Null when iasl and acpiexec run; otherwise the one-line reason a test skips. */
export function acpicaMissing(): string | null {
  for (const tool of ['iasl', 'acpiexec']) {
    const r = spawnSync(tool, ['-v'], { encoding: 'utf8' });
    if (r.error) return `${tool} not installed (apt-get install acpica-tools)`;
  }
  return null;
}

export interface ToolRun {
  /** stdout and stderr together. */
  readonly output: string;
  readonly status: number | null;
}

/** A scratch directory for one test; `dispose` removes it. */
export class AcpicaDir {
  readonly path = mkdtempSync(join(tmpdir(), 'tsvmm-acpi-'));

  write(name: string, bytes: Uint8Array | string): string {
    writeFileSync(join(this.path, name), bytes);
    return name;
  }

  read(name: string): Buffer {
    return readFileSync(join(this.path, name));
  }

  readText(name: string): string {
    return readFileSync(join(this.path, name), 'utf8');
  }

  run(tool: string, args: readonly string[]): ToolRun {
    const r = spawnSync(tool, args, { cwd: this.path, encoding: 'utf8', timeout: 60_000 });
    if (r.error) throw r.error;
    return { output: `${r.stdout}${r.stderr}`, status: r.status };
  }

  /** `iasl -d name.dat` → the .dsl text and what iasl printed. */
  disassemble(base: string, bytes: Uint8Array): { dsl: string; output: string; status: number | null } {
    this.write(`${base}.dat`, bytes);
    const r = this.run('iasl', ['-d', `${base}.dat`]);
    let dsl = '';
    try {
      dsl = this.readText(`${base}.dsl`);
    } catch {
      /* no output: the status/output say why */
    }
    return { dsl, output: r.output, status: r.status };
  }

  /**
   * Compiles ASL or a data-table source with iasl (`-on`: no name-path shortening, so the AML keeps the paths
   * as written) → the .aml bytes and what iasl printed.
   */
  compile(base: string, source: string): { aml: Buffer | null; output: string; status: number | null } {
    // iasl names its output after the input up to the first dot.
    this.write(`${base}_re.dsl`, source);
    const r = this.run('iasl', ['-on', `${base}_re.dsl`]);
    let aml: Buffer | null = null;
    try {
      aml = this.read(`${base}_re.aml`);
    } catch {
      /* compile failed */
    }
    return { aml, output: r.output, status: r.status };
  }

  /** acpiexec in batch mode over the given table files, running `commands` (joined with ';'). */
  acpiexec(files: readonly string[], commands: readonly string[]): ToolRun {
    return this.run('acpiexec', ['-b', commands.join('; '), ...files]);
  }

  dispose(): void {
    rmSync(this.path, { recursive: true, force: true });
  }
}

/** Lines of tool output that report a problem (errors, warnings, bad checksums). */
export function problems(output: string): string[] {
  return output
    .split('\n')
    .filter((l) => /error|warning|incorrect checksum|invalid|mismatch/i.test(l) && !/0 Errors, 0 Warnings/.test(l));
}
