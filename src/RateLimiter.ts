/**
 * `RegistryRateLimiter`: a token bucket on Effect's `Clock` (`rate_limit` requests per second,
 * `rate_limit_burst` capacity) that every registry request takes a token from, token fetches
 * included. Built on Effect's own `RateLimiter` (token-bucket algorithm: `burst` permits, one
 * refilled every `1 / rate` seconds), so `TestClock` drives it in tests.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import { identity } from "effect/Function"
import * as Layer from "effect/Layer"
import * as EffectRateLimiter from "effect/RateLimiter"
import { InvalidConfig } from "./Errors.js"

/**
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** Requests per second; 0 (the default) turns limiting off. Fractions are allowed (0.5 = one per 2 s). */
  readonly limit?: number | undefined
  /** Bucket capacity; 0 means 1 (as in the OpenTofu backend). */
  readonly burst?: number | undefined
}

/**
 * Wraps one request so that it starts only when a token is available.
 *
 * @since 0.1.0
 * @category models
 */
export interface Service {
  readonly limit: <A, E, R>(request: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
}

/**
 * @since 0.1.0
 * @category tags
 */
export class RegistryRateLimiter extends Context.Tag("oras-state/RegistryRateLimiter")<
  RegistryRateLimiter,
  Service
>() {}

/**
 * No limit.
 *
 * @since 0.1.0
 * @category constants
 */
export const unlimited: Service = { limit: identity }

/**
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: Options = {}) =>
  Effect.gen(function*() {
    const rate = options.limit ?? 0
    const burstOption = options.burst ?? 0
    if (!Number.isFinite(rate) || rate < 0) {
      return yield* new InvalidConfig({ key: "rate_limit", value: String(rate), reason: "must be a number ≥ 0" })
    }
    if (!Number.isInteger(burstOption) || burstOption < 0) {
      return yield* new InvalidConfig({
        key: "rate_limit_burst",
        value: String(burstOption),
        reason: "must be an integer ≥ 0"
      })
    }
    if (rate === 0) return unlimited
    const burst = Math.max(1, burstOption)
    const limiter = yield* EffectRateLimiter.make({
      limit: burst,
      interval: Duration.millis((burst / rate) * 1000),
      algorithm: "token-bucket"
    })
    return RegistryRateLimiter.of({ limit: (request) => limiter(request) })
  })

/**
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: Options = {}): Layer.Layer<RegistryRateLimiter, InvalidConfig> =>
  Layer.scoped(RegistryRateLimiter, make(options))

/**
 * @since 0.1.0
 * @category layers
 */
export const layerUnlimited: Layer.Layer<RegistryRateLimiter> = Layer.succeed(RegistryRateLimiter, unlimited)
