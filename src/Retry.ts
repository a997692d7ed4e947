/**
 * The one retry policy of the library: exponential backoff from `retry_wait_min`, each delay capped
 * at `retry_wait_max`, jittered, at most `retry_max` retries, and a server's `Retry-After` honoured
 * (it is never waited less than asked). Only `TransientRegistry` is retried, and only around
 * idempotent requests — the callers decide which those are.
 *
 * @since 0.1.0
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Schedule from "effect/Schedule"
import { isTransientRegistry, type TransientRegistry } from "./Errors.js"

/**
 * The OpenTofu backend keys (`retry_max`, `retry_wait_min`, `retry_wait_max`).
 *
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** Retries after the first attempt (default 2, i.e. 3 attempts); 0 disables retrying. */
  readonly maxRetries?: number | undefined
  /** First backoff delay (default 1 second). */
  readonly waitMin?: Duration.DurationInput | undefined
  /** Cap of any single backoff delay (default 30 seconds). A larger `Retry-After` still wins. */
  readonly waitMax?: Duration.DurationInput | undefined
  /** Randomise each backoff delay in [0.8, 1.2] × delay (default true). */
  readonly jitter?: boolean | undefined
}

/**
 * @since 0.1.0
 * @category constants
 */
export const defaults = {
  maxRetries: 2,
  waitMin: Duration.seconds(1),
  waitMax: Duration.seconds(30)
} as const

/**
 * The schedule: its input is the failure being retried, so a `Retry-After` it carries can raise the
 * next delay.
 *
 * @since 0.1.0
 * @category constructors
 */
export const schedule = (options: Options = {}): Schedule.Schedule<unknown, TransientRegistry> => {
  const maxRetries = Math.max(0, Math.floor(options.maxRetries ?? defaults.maxRetries))
  const waitMin = Duration.decode(options.waitMin ?? defaults.waitMin)
  // A cap below the first delay would make the policy a constant delay; lift it, as ghoten does.
  const waitMax = Duration.max(Duration.decode(options.waitMax ?? defaults.waitMax), waitMin)
  const backoff = Schedule.exponential(waitMin, 2).pipe(
    (s) => (options.jitter === false ? s : Schedule.jittered(s)),
    Schedule.modifyDelay((_, delay) => Duration.min(delay, waitMax))
  )
  return backoff.pipe(
    Schedule.intersect(Schedule.recurs(maxRetries)),
    Schedule.intersect(Schedule.identity<TransientRegistry>()),
    // The schedule may be stepped with a non-transient error before `while` stops the retry loop,
    // so check the input rather than trust its type.
    Schedule.modifyDelay(([, error], delay) =>
      isTransientRegistry(error) && error.retryAfterMillis !== undefined
        ? Duration.max(delay, Duration.millis(error.retryAfterMillis))
        : delay
    ),
    Schedule.as(undefined as unknown)
  )
}

/**
 * Retry `self` while it fails with `TransientRegistry`, per `policy`. Any other error fails at once.
 *
 * @since 0.1.0
 * @category combinators
 */
export const retryTransient = <A, E, R>(
  self: Effect.Effect<A, E, R>,
  policy: Schedule.Schedule<unknown, TransientRegistry>
): Effect.Effect<A, E, R> =>
  Effect.retry(self, {
    while: (error: E) => isTransientRegistry(error),
    schedule: policy as unknown as Schedule.Schedule<unknown, E>
  })

/**
 * Parse a `Retry-After` header (delay-seconds or an HTTP date, relative to `nowMillis`).
 *
 * @since 0.1.0
 * @category parsers
 */
export const parseRetryAfter = (value: string | undefined, nowMillis: number): number | undefined => {
  if (value === undefined) return undefined
  const trimmed = value.trim()
  if (/^\d+$/.test(trimmed)) {
    const seconds = Number(trimmed)
    return Number.isSafeInteger(seconds) ? Math.min(seconds, 24 * 3600) * 1000 : undefined
  }
  const date = Date.parse(trimmed)
  if (Number.isNaN(date)) return undefined
  return Math.max(0, Math.min(date - nowMillis, 24 * 3600 * 1000))
}
