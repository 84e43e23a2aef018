/**
 * Elysia compiles each route into one function, and makes it `async` when it guesses that a
 * handler or hook may return a promise. It guesses from the function's source text: any
 * `return f(` or `=> f(` counts (elysia/dist/compose: matchFnReturn), so `() => systemInfo(k)`
 * is awaited like a database call, and the minified build guesses differently from the
 * sources. An async route costs every request a promise and a trip through the microtask
 * queue, and the edge a second promise after it.
 *
 * `synchronous(fn)`, for a handler or hook that never returns a promise, shows Elysia the
 * function's own source text with one change: a call right after `return` or `=>` is pushed
 * two spaces away, which the guess does not look past. Everything else Elysia reads in the
 * text stays as written — which parts of the context the function uses (`query`, `set`,
 * `route`...), and whether it returns anything at all. A wrapped function that returns a
 * promise after all throws, so the request fails (500) instead of answering with whatever a
 * promise serialises to (test/src/http/synchronous.test.ts).
 */
export function synchronous<Context, Result>(fn: (context: Context) => NotAPromise<Result>): (context: Context) => Result {
  const wrapper = (context: Context) => {
    const result = fn(context) as Result;
    if (typeof (result as { then?: unknown } | null)?.then === "function") throw new TypeError("synchronous(): the function returned a promise");
    return result;
  };
  const source = fn.toString().replace(CALL_AFTER_RETURN, "$1  ");
  Object.defineProperty(wrapper, "toString", { value: () => source });
  return wrapper;
}

/** `return f(` and `=> f(` (with at most one space), as Elysia's guess matches them. */
const CALL_AFTER_RETURN = /(return|=>)\s?(?=\S+\()/g;

/** A type error where a promise would be returned. */
type NotAPromise<T> = T extends PromiseLike<unknown> ? never : T;
