/**
 * Runs one plugin command in-process, as main.ts would, against a stand-in for the API: what
 * it printed, what it asked the server and what it threw. For what a command checks on the
 * client side (flags, --yes, --json); what the server does is tested against the server.
 */
import { UsageError } from "../../src/cli/command-line.ts";
import type { ApiClient, Command, CommandContext } from "../../src/plugin.ts";

export interface SentRequest {
  method: string;
  path: string;
  body?: unknown;
  /** Sent as confirmed (--yes): the server's 428 would be answered. */
  confirmed: boolean;
  /** Sent waiting for the answer as long as the work takes (present only then). */
  worksLong?: true;
}

export interface CommandInput {
  args?: string[];
  options?: Record<string, string | boolean | undefined>;
  json?: boolean;
  env?: Record<string, string>;
  /** The server's answer to a request (a JSON body, or the text of requestText or requestStream); throw for an error. Default: {}. */
  answer?: (request: SentRequest) => unknown;
  /** The server the client talks to (default https://citadel.test:8443, not pinned). */
  server?: { baseUrl: string; pinned?: string };
  /** Where the command keeps what this machine remembers (default: a directory that does not exist). */
  configHome?: string;
}

export interface CommandRun {
  /** The exit code main.ts would give: the command's, else 2 for a UsageError, 1 for any other error. */
  code: number;
  error: Error | null;
  stdout: string;
  stderr: string;
  requests: SentRequest[];
}

export async function runCommand(commands: readonly Command[], words: string, input: CommandInput = {}): Promise<CommandRun> {
  const command = commands.find((c) => c.words.join(" ") === words);
  if (!command) throw new Error(`no command ${words}`);
  const stdout: string[] = [];
  const stderr: string[] = [];
  const requests: SentRequest[] = [];
  const answer = input.answer ?? (() => ({}));
  const api: ApiClient = {
    baseUrl: input.server?.baseUrl ?? "https://citadel.test:8443",
    pinned: input.server?.pinned,
    async request<T>(method: string, path: string, body?: unknown, options?: { confirmed?: boolean; worksLong?: boolean }) {
      const sent = { method, path, body, confirmed: options?.confirmed === true, ...(options?.worksLong ? { worksLong: true as const } : {}) };
      requests.push(sent);
      return answer(sent) as T;
    },
    async requestText(method: string, path: string) {
      const sent = { method, path, confirmed: false };
      requests.push(sent);
      return String(answer(sent));
    },
    async requestStream(method: string, path: string) {
      const sent = { method, path, confirmed: false };
      requests.push(sent);
      const text = String(answer(sent));
      return (async function* () {
        yield Buffer.from(text);
      })();
    },
  };
  const ctx: CommandContext = {
    args: input.args ?? [],
    options: { ...input.options, ...(input.json ? { json: true } : {}) },
    json: input.json === true,
    out: (text) => stdout.push(`${text}\n`),
    err: (text) => stderr.push(`${text}\n`),
    api: async () => api,
    configHome: input.configHome ?? "/nonexistent/config-home",
    env: input.env ?? {},
    dataDir: () => {
      throw new Error("no data directory in this test");
    },
    config: () => {
      throw new Error("no configuration in this test");
    },
    migrations: () => {
      throw new Error("no migrations in this test");
    },
  };
  try {
    const code = await command.run(ctx);
    return { code, error: null, stdout: stdout.join(""), stderr: stderr.join(""), requests };
  } catch (error) {
    if (!(error instanceof Error)) throw error;
    return { code: error instanceof UsageError ? 2 : 1, error, stdout: stdout.join(""), stderr: stderr.join(""), requests };
  }
}
