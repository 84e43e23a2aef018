/** Ids of stored things: a short type prefix and 14 random base62 characters (≈ 83 bits). */
import { randomBase62 } from "./auth/tokens.ts";

export const newId = (prefix: string) => `${prefix}_${randomBase62(14)}`;
