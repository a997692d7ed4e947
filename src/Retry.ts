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
import { recordRetry } from "./internal/telemetry.js"

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
  const cap = Schedule.modifyDelay((_: unknown, delay: Duration.Duration) => Duration.min(delay, waitMax))
  // Cap, jitter, cap again: jittering the capped delay keeps the delays random once the backoff
  // has reached `waitMax` (jittering first and capping after made every late delay exactly
  // `waitMax`, so clients that failed together retried together), and the second cap keeps
  // `waitMax` a hard bound.
  const backoff = Schedule.exponential(waitMin, 2).pipe(
    cap,
    (s) => (options.jitter === false ? s : cap(Schedule.jittered(s)))
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
 * Each retry is counted in `Telemetry.retries` (by the failed operation) and sets `retry.count`
 * (retries so far) on the current span.
 *
 * @since 0.1.0
 * @category combinators
 */
export const retryTransient = <A, E, R>(
  self: Effect.Effect<A, E, R>,
  policy: Schedule.Schedule<unknown, TransientRegistry>
): Effect.Effect<A, E, R> =>
  // The retry machinery (a schedule driver per call) is only built once a first attempt has failed
  // transiently: on the happy path a request pays for one failure handler, nothing more.
  Effect.catchAll(self, (first) => (isTransientRegistry(first) ? retryAfter(self, first, policy) : Effect.fail(first)))

// The retry loop, entered with the first failure (replayed once so that the schedule sees it).
const retryAfter = <A, E, R>(
  self: Effect.Effect<A, E, R>,
  first: E,
  policy: Schedule.Schedule<unknown, TransientRegistry>
): Effect.Effect<A, E, R> =>
  Effect.suspend(() => {
    let replayed = false
    let retries = 0
    let operation = "unknown"
    return Effect.retry(
      // Counted when the retry starts (after its delay): a failure the policy gives up on is no retry.
      Effect.suspend(() => {
        if (!replayed) {
          replayed = true
          return Effect.fail(first)
        }
        return Effect.zipRight(recordRetry(operation, retries), self)
      }),
      {
        while: (error: E) => {
          if (!isTransientRegistry(error)) return false
          operation = error.operation
          retries++
          return true
        },
        schedule: policy as unknown as Schedule.Schedule<unknown, E>
      }
    )
  })

/**
 * Parse a `Retry-After` header (RFC 9110 §10.2.3): delay-seconds, or an HTTP-date (IMF-fixdate,
 * the obsolete RFC 850 and asctime forms, always GMT) relative to `nowMillis`. Returns
 * milliseconds, at most 24 hours; a date in the past is 0; anything else is `undefined`.
 *
 * @since 0.1.0
 * @category parsers
 */
export const parseRetryAfter = (value: string | undefined, nowMillis: number): number | undefined => {
  if (value === undefined) return undefined
  const trimmed = value.trim()
  if (/^\d+$/.test(trimmed)) return Math.min(Number(trimmed), maxRetryAfterSeconds) * 1000
  const date = parseHttpDate(trimmed, nowMillis)
  if (date === undefined) return undefined
  return Math.max(0, Math.min(date - nowMillis, maxRetryAfterSeconds * 1000))
}

const maxRetryAfterSeconds = 24 * 3600

const months = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
const time = "(\\d{2}):(\\d{2}):(\\d{2})"
// Sun, 06 Nov 1994 08:49:37 GMT
const imfFixdate = new RegExp(`^[a-z]{3},\\s*(\\d{1,2})\\s+([a-z]{3})\\s+(\\d{4})\\s+${time}\\s+(?:gmt|utc)$`, "i")
// Sunday, 06-Nov-94 08:49:37 GMT
const rfc850 = new RegExp(`^[a-z]{6,9},\\s*(\\d{1,2})-([a-z]{3})-(\\d{2})\\s+${time}\\s+(?:gmt|utc)$`, "i")
// Sun Nov  6 08:49:37 1994
const asctime = new RegExp(`^[a-z]{3}\\s+([a-z]{3})\\s+(\\d{1,2})\\s+${time}\\s+(\\d{4})$`, "i")

// `Date.parse` is no HTTP-date parser: it reads "-5", "1.5" or "foo 12" as dates in 2001, and
// asctime (which has no zone) in the host's local time zone.
const parseHttpDate = (s: string, nowMillis: number): number | undefined => {
  let m = imfFixdate.exec(s)
  if (m !== null) return utc(Number(m[3]), m[2]!, Number(m[1]), m[4]!, m[5]!, m[6]!)
  m = rfc850.exec(s)
  if (m !== null) {
    // A two-digit year more than 50 years in the future is in the past century (RFC 9110 §5.6.7).
    const nowYear = new Date(nowMillis).getUTCFullYear()
    let year = Math.floor(nowYear / 100) * 100 + Number(m[3])
    if (year > nowYear + 50) year -= 100
    return utc(year, m[2]!, Number(m[1]), m[4]!, m[5]!, m[6]!)
  }
  m = asctime.exec(s)
  if (m !== null) return utc(Number(m[6]), m[1]!, Number(m[2]), m[3]!, m[4]!, m[5]!)
  return undefined
}

const utc = (
  year: number,
  monthName: string,
  day: number,
  hours: string,
  minutes: string,
  seconds: string
): number | undefined => {
  const month = months.indexOf(monthName.toLowerCase())
  const h = Number(hours)
  const min = Number(minutes)
  const sec = Number(seconds)
  if (month < 0 || day < 1 || h > 23 || min > 59 || sec > 60) return undefined
  const millis = Date.UTC(year, month, day, h, min, Math.min(sec, 59))
  // Reject days the month does not have (Feb 30 would otherwise roll over into March).
  return new Date(millis).getUTCDate() === day ? millis : undefined
}
