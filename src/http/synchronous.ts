/**
 * Elysia compiles each route into one function, and makes it `async` when it guesses that a
 * handler or hook may return a promise. It guesses from the function's source text: any
 * `return f(` or `=> f(` counts, so `() => systemInfo(k)` is awaited like a database call, and
 * the minified build guesses differently from the sources. An async route costs every request
 * a promise and a trip through the microtask queue, and the edge a second promise after it.
 *
 * `synchronous(fn)` says, for a handler or hook that never returns a promise, what the text
 * cannot: Elysia reads the wrapper's source text, which names no call. Misused on a function
 * that does return a promise, the route's response check fails and the request answers 500,
 * so a mistake shows at once (test/src/http/synchronous.test.ts).
 */
export function synchronous<Context, Result>(fn: (context: Context) => NotAPromise<Result>): (context: Context) => Result {
  const wrapper = (context: Context) => fn(context) as Result;
  Object.defineProperty(wrapper, "toString", { value: () => "function synchronous(context) {}" });
  return wrapper;
}

/** A type error where a promise would be returned. */
type NotAPromise<T> = T extends PromiseLike<unknown> ? never : T;
