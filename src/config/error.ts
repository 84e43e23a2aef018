/** A configuration problem: one message that names the key (or variable, or file) and what is wrong. */
export class ConfigError extends Error {
  override readonly name = "ConfigError";
}
