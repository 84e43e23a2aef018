/**
 * For the `citadel ...` command lines a command prints as next steps: run in a fresh shell,
 * they must act on the same instance. A command given `--data DIR` or `--config FILE` says so
 * again in every line it prints; without them the next command would act on ./.citadel (or
 * whatever the config search finds) and fail there.
 */

type Options = Readonly<Record<string, string | boolean | undefined>>;

/** Shell-quotes a word (a path, an email) for a command line the operator can paste. */
export function shellQuote(text: string): string {
  return /^[A-Za-z0-9_./:@%+=,-]+$/.test(text) ? text : `'${text.replace(/'/g, `'\\''`)}'`;
}

/** The --data and --config a command was given, quoted, each with a space before it; "" when it was given neither. */
export function sameInstanceFlags(options: Options): string {
  return ["data", "config"].map((name) => (typeof options[name] === "string" ? ` --${name} ${shellQuote(options[name])}` : "")).join("");
}
