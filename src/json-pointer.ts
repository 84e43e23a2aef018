/**
 * Turns a JSON pointer from a validator ("/tags/2/name") into the path people write
 * ("tags[2].name"), for error messages that name the offending key or field.
 */
export function pointerToPath(pointer: string): string {
  return pointer
    .split("/")
    .slice(1)
    .map((p) => p.replace(/~1/g, "/").replace(/~0/g, "~"))
    .reduce((acc, part) => (/^\d+$/.test(part) ? `${acc}[${part}]` : acc ? `${acc}.${part}` : part), "");
}
