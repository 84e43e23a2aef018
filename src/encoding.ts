/** Text encodings shared by the server and the client code in plugins. */

/** Strict base64url (no padding, canonical), or null: one spelling per byte string. */
export function decodeBase64url(s: string): Buffer | null {
  if (s.length === 0 || s.length % 4 === 1 || !/^[A-Za-z0-9_-]+$/.test(s)) return null;
  const data = Buffer.from(s, "base64url");
  return data.toString("base64url") === s ? data : null;
}
