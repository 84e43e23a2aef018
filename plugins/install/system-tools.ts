/**
 * The programs the installer runs (useradd, getent, systemd-creds, systemctl, the citadel
 * binary itself): found on the caller's PATH, started with an argument list (never a shell),
 * their output collected. The environment is the one main.ts hands the command, minus
 * CITADEL_* variables: the installer's own shell must not change what gets installed.
 */

export interface ToolResult {
  code: number;
  stdout: string;
  stderr: string;
}

type Env = Readonly<Record<string, string | undefined>>;

/** A user and group to run a program as (setuid, setgid; no supplementary groups). */
export interface RunAs {
  uid: number;
  gid: number;
}

/** Where administration tools live even when a `sudo` PATH leaves them out. */
const SYSTEM_BINARIES = "/usr/local/sbin:/usr/sbin:/sbin";

export class SystemTools {
  readonly env: Record<string, string>;
  private readonly path: string;

  constructor(env: Env) {
    this.env = Object.fromEntries(Object.entries(env).filter((e): e is [string, string] => e[1] !== undefined && !e[0].startsWith("CITADEL_")));
    this.path = [env.PATH, SYSTEM_BINARIES].filter(Boolean).join(":");
  }

  /** The absolute path of a program, or null when it is not installed. */
  find(name: string): string | null {
    return Bun.which(name, { PATH: this.path });
  }

  /**
   * Runs a program to completion. `stdin` is handed over whole (a key never touches a file).
   * `as`: the user and group it runs as (this process's rights when absent).
   */
  async run(argv: readonly string[], stdin?: Uint8Array, as?: RunAs): Promise<ToolResult> {
    const { code, stdout, stderr } = await this.runForBytes(argv, stdin, as);
    return { code, stdout: Buffer.from(stdout).toString("utf8"), stderr };
  }

  /** Like run, with standard output as bytes that the caller can overwrite when it holds a key. */
  async runForBytes(argv: readonly string[], stdin?: Uint8Array, as?: RunAs): Promise<{ code: number; stdout: Uint8Array; stderr: string }> {
    const [program, ...args] = argv;
    const executable = program!.includes("/") ? program! : this.find(program!);
    if (!executable) return { code: 127, stdout: new Uint8Array(), stderr: `${program}: not found` };
    let child;
    try {
      child = Bun.spawn([executable, ...args], { env: this.env, stdin: stdin ?? "ignore", stdout: "pipe", stderr: "pipe", ...(as && { uid: as.uid, gid: as.gid }) });
    } catch (error) {
      // Bun throws at spawn time for a file it cannot execute; one error path for callers.
      return { code: 126, stdout: new Uint8Array(), stderr: `${program}: ${error instanceof Error ? error.message : String(error)}` };
    }
    const [stdout, stderr, code] = await Promise.all([new Response(child.stdout).bytes(), new Response(child.stderr).text(), child.exited]);
    return { code, stdout, stderr };
  }

  /** Like run, but a failure is an error that quotes the program's own message. */
  async mustRun(argv: readonly string[], stdin?: Uint8Array): Promise<ToolResult> {
    const result = await this.run(argv, stdin);
    if (result.code !== 0) throw new Error(`${argv.join(" ")} failed (exit ${result.code}): ${(result.stderr || result.stdout).trim()}`);
    return result;
  }
}
