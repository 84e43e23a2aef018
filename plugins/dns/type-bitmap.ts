/**
 * The type bit maps of NSEC and NSEC3 records (RFC 4034 section 4.1.2, RFC 5155 section 3.2.1):
 * the types present at a name, as windows of 256 types each, every window holding only the
 * octets up to its last set bit. A name with no types (an NSEC3's empty non-terminal) has none.
 */

/** The type bit maps field for `types`. */
export function typeBitmap(types: Iterable<number>): Uint8Array {
  const windows = new Map<number, Uint8Array>();
  for (const type of types) {
    const window = type >> 8;
    const bits = windows.get(window) ?? new Uint8Array(32);
    bits[(type & 0xff) >> 3]! |= 0x80 >> (type & 7);
    windows.set(window, bits);
  }
  const parts: Uint8Array[] = [];
  for (const window of [...windows.keys()].sort((a, b) => a - b)) {
    const bits = windows.get(window)!;
    let length = 32;
    while (length > 0 && bits[length - 1] === 0) length--;
    parts.push(Uint8Array.of(window, length), bits.subarray(0, length));
  }
  return Buffer.concat(parts);
}

/** The types a type bit maps field holds, in increasing order. */
export function typesOfBitmap(bitmap: Uint8Array): number[] {
  const types: number[] = [];
  for (let at = 0; at + 2 <= bitmap.length; ) {
    const window = bitmap[at]!;
    const length = bitmap[at + 1]!;
    for (let i = 0; i < length; i++) {
      const octet = bitmap[at + 2 + i] ?? 0;
      for (let bit = 0; bit < 8; bit++) if (octet & (0x80 >> bit)) types.push((window << 8) | (i << 3) | bit);
    }
    at += 2 + length;
  }
  return types;
}
