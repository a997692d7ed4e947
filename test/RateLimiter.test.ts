import { assert, describe, expect, it } from "@effect/vitest"
import { Clock, Effect, Exit, Fiber, TestClock } from "effect"
import { InvalidConfig } from "../src/Errors.js"
import * as RateLimiter from "../src/RateLimiter.js"

/** Start `count` requests at once through `limiter`; returns their start times once all ran. */
const burst = (limiter: RateLimiter.Service, count: number, starts: Array<number>) =>
  Effect.forEach(
    Array.from({ length: count }, (_, i) => i),
    () => limiter.limit(Effect.flatMap(Clock.currentTimeMillis, (t) => Effect.sync(() => starts.push(t)))),
    { concurrency: "unbounded", discard: true }
  )

describe("RegistryRateLimiter", () => {
  it.scoped("rate 10/s, burst 3: three requests at once, then one per 100 ms", () =>
    Effect.gen(function*() {
      const limiter = yield* RateLimiter.make({ limit: 10, burst: 3 })
      const starts: Array<number> = []
      const fiber = yield* Effect.fork(burst(limiter, 7, starts))
      yield* TestClock.adjust(0)
      expect(starts).toEqual([0, 0, 0])
      yield* TestClock.adjust(99)
      expect(starts).toEqual([0, 0, 0])
      yield* TestClock.adjust(1)
      expect(starts).toEqual([0, 0, 0, 100])
      yield* TestClock.adjust(1000)
      yield* Fiber.join(fiber)
      expect(starts).toEqual([0, 0, 0, 100, 200, 300, 400])
    }))

  it.scoped("the bucket refills up to burst only", () =>
    Effect.gen(function*() {
      const limiter = yield* RateLimiter.make({ limit: 10, burst: 3 })
      const first: Array<number> = []
      const f1 = yield* Effect.fork(burst(limiter, 3, first))
      yield* TestClock.adjust(0)
      yield* Fiber.join(f1)
      // Idle for 10 s: 100 tokens' worth of time, but the bucket holds 3.
      yield* TestClock.adjust("10 seconds")
      const starts: Array<number> = []
      const f2 = yield* Effect.fork(burst(limiter, 5, starts))
      yield* TestClock.adjust("1 second")
      yield* Fiber.join(f2)
      expect(starts).toEqual([10_000, 10_000, 10_000, 10_100, 10_200])
    }))

  it.scoped("the layer limits every request that goes through it", () =>
    Effect.gen(function*() {
      const limiter = yield* RateLimiter.RegistryRateLimiter
      const starts: Array<number> = []
      const fiber = yield* Effect.fork(burst(limiter, 4, starts))
      yield* TestClock.adjust("1 second")
      yield* Fiber.join(fiber)
      expect(starts).toEqual([0, 0, 250, 500])
    }).pipe(Effect.provide(RateLimiter.layer({ limit: 4, burst: 2 }))))

  it.scoped("rate 0 (the default) does not limit", () =>
    Effect.gen(function*() {
      for (const options of [{ limit: 0, burst: 5 }, { limit: 0 }, {}]) {
        const limiter = yield* RateLimiter.make(options)
        expect(limiter).toBe(RateLimiter.unlimited)
        const starts: Array<number> = []
        // Not forked and no clock adjustment: it would hang if any request had to wait.
        yield* burst(limiter, 100, starts)
        expect(starts).toEqual(Array.from({ length: 100 }, () => 0))
      }
      const starts: Array<number> = []
      yield* burst(yield* RateLimiter.RegistryRateLimiter.pipe(Effect.provide(RateLimiter.layerUnlimited)), 50, starts)
      expect(starts).toHaveLength(50)
    }))

  it.scoped("burst 0 means 1", () =>
    Effect.gen(function*() {
      for (const options of [{ limit: 10, burst: 0 }, { limit: 10 }]) {
        const limiter = yield* RateLimiter.make(options)
        const starts: Array<number> = []
        const fiber = yield* Effect.fork(burst(limiter, 3, starts))
        const t0 = yield* Clock.currentTimeMillis
        yield* TestClock.adjust("1 second")
        yield* Fiber.join(fiber)
        expect(starts.map((t) => t - t0)).toEqual([0, 100, 200])
      }
    }))

  it.scoped("a fractional rate spaces requests by more than a second", () =>
    Effect.gen(function*() {
      const limiter = yield* RateLimiter.make({ limit: 0.5, burst: 1 })
      const starts: Array<number> = []
      const fiber = yield* Effect.fork(burst(limiter, 3, starts))
      yield* TestClock.adjust("1 minute")
      yield* Fiber.join(fiber)
      expect(starts).toEqual([0, 2000, 4000])
    }))

  it.scoped("limits only the start: slow requests run concurrently", () =>
    Effect.gen(function*() {
      const limiter = yield* RateLimiter.make({ limit: 10, burst: 3 })
      const ends: Array<number> = []
      const slow = limiter.limit(
        Effect.zipRight(Effect.sleep("1 second"), Effect.flatMap(Clock.currentTimeMillis, (t) => Effect.sync(() => ends.push(t))))
      )
      const fiber = yield* Effect.fork(Effect.all([slow, slow, slow, slow], { concurrency: "unbounded" }))
      yield* TestClock.adjust("5 seconds")
      yield* Fiber.join(fiber)
      expect(ends).toEqual([1000, 1000, 1000, 1100])
    }))

  describe("invalid options fail with InvalidConfig naming the key", () => {
    const invalid = [
      [{ limit: -1 }, "rate_limit", "-1"],
      [{ limit: Number.NaN }, "rate_limit", "NaN"],
      [{ limit: Number.POSITIVE_INFINITY }, "rate_limit", "Infinity"],
      [{ limit: 10, burst: 1.5 }, "rate_limit_burst", "1.5"],
      [{ limit: 10, burst: -1 }, "rate_limit_burst", "-1"],
      [{ limit: 10, burst: Number.NaN }, "rate_limit_burst", "NaN"],
      [{ limit: 0, burst: 2.5 }, "rate_limit_burst", "2.5"]
    ] as const

    for (const [options, key, value] of invalid) {
      it.scoped(`${JSON.stringify(options)} (${key} = ${value})`, () =>
        Effect.gen(function*() {
          const error = yield* Effect.flip(RateLimiter.make(options))
          assert.instanceOf(error, InvalidConfig)
          expect(error.key).toBe(key)
          expect(error.value).toBe(value)
          expect(error.message).toContain(key)
        }))
    }

    it.effect("from the layer too", () =>
      Effect.gen(function*() {
        const exit = yield* Effect.exit(
          Effect.provide(RateLimiter.RegistryRateLimiter, RateLimiter.layer({ limit: -5 }))
        )
        assert.isTrue(Exit.isFailure(exit))
        const error = yield* Effect.flip(exit)
        assert.instanceOf(error, InvalidConfig)
        expect(error.key).toBe("rate_limit")
      }))
  })
})
