/** What a promise was refused with: the error's code (the HTTP problem's) and message; null when it was not. */
export async function refusal(settled: Promise<unknown>): Promise<{ code?: string; message?: string } | null> {
  const error = (await settled.then(
    () => null,
    (e: unknown) => e,
  )) as { code?: string; message?: string } | null;
  return error && { code: error.code, message: error.message };
}
