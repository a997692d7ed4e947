import { assert, describe, expect, it } from "@effect/vitest"
import { Clock, Duration, Effect, Exit, FastCheck, Fiber, Option, Random, TestClock } from "effect"
import * as Digest from "../src/Digest.js"
import { RegistryError, TransientRegistry, Unauthorized } from "../src/Errors.js"
import * as MemoryRegistry from "../src/MemoryRegistry.js"
import { MediaType, Registry, type Service } from "../src/Registry.js"
import * as Retry from "../src/Retry.js"

const transient = (reason = "flaky", retryAfterMillis?: number) =>
  new TransientRegistry({
    operation: "test",
    status: 503,
    reason,
    ...(retryAfterMillis === undefined ? {} : { retryAfterMillis })
  })

/** An effect that fails with `failures[0]`, `failures[1]`, … and then succeeds, recording the time of each attempt. */
const scripted = <E>(failures: ReadonlyArray<E>) => {
  const attempts: Array<number> = []
  const effect = Effect.gen(function*() {
    const now = yield* Clock.currentTimeMillis
    const n = attempts.push(now)
    if (n <= failures.length) return yield* Effect.fail(failures[n - 1]!)
    return "ok" as const
  })
  return { attempts, effect }
}

/** Successive waits between attempts (to the microsecond: jittered waits are fractional milliseconds). */
const gaps = (attempts: ReadonlyArray<number>) =>
  attempts.slice(1).map((t, i) => Math.round((t - attempts[i]!) * 1000) / 1000)

/** Run `effect` with retries in a fiber, drive the TestClock well past every wait, return its exit. */
const drive = <A, E>(effect: Effect.Effect<A, E>, policy: Parameters<typeof Retry.retryTransient>[1]) =>
  Effect.gen(function*() {
    const fiber = yield* Effect.fork(Retry.retryTransient(effect, policy))
    yield* TestClock.adjust("1 day")
    return yield* Fiber.await(fiber)
  })

const fixed = { maxRetries: 3, waitMin: "1 second", waitMax: "3 seconds", jitter: false } as const

describe("Retry.schedule / retryTransient", () => {
  it.effect("backs off exponentially from waitMin, each wait capped at waitMax", () =>
    Effect.gen(function*() {
      const { attempts, effect } = scripted([transient(), transient(), transient()])
      const exit = yield* drive(effect, Retry.schedule(fixed))
      assert.deepStrictEqual(exit, Exit.succeed("ok" as const))
      // waits 1 s, 2 s, then 4 s capped to 3 s
      expect(attempts).toEqual([0, 1000, 3000, 6000])
    }))

  it.effect("does not retry a moment early", () =>
    Effect.gen(function*() {
      const { attempts, effect } = scripted([transient(), transient()])
      const fiber = yield* Effect.fork(Retry.retryTransient(effect, Retry.schedule(fixed)))
      yield* TestClock.adjust(999)
      expect(attempts).toEqual([0])
      yield* TestClock.adjust(1)
      expect(attempts).toEqual([0, 1000])
      yield* TestClock.adjust(1999)
      expect(attempts).toEqual([0, 1000])
      assert.isTrue(Option.isNone(yield* Fiber.poll(fiber)))
      yield* TestClock.adjust(1)
      expect(attempts).toEqual([0, 1000, 3000])
      expect(yield* Fiber.join(fiber)).toBe("ok")
    }))

  it.effect("exhausting the retries surfaces the last TransientRegistry", () =>
    Effect.gen(function*() {
      const { attempts, effect } = scripted([1, 2, 3, 4, 5].map((n) => transient(`attempt ${n}`)))
      const exit = yield* drive(effect, Retry.schedule(fixed))
      expect(attempts).toEqual([0, 1000, 3000, 6000]) // 1 + maxRetries attempts
      assert.deepStrictEqual(exit, Exit.fail(transient("attempt 4")))
    }))

  it.effect("never retries RegistryError or Unauthorized", () =>
    Effect.gen(function*() {
      for (const error of [
        new RegistryError({ operation: "test", status: 404, code: "MANIFEST_UNKNOWN", reason: "not found" }),
        new Unauthorized({ operation: "test", status: 403, reason: "denied" })
      ]) {
        const { attempts, effect } = scripted([error, error])
        const exit = yield* drive(effect, Retry.schedule(fixed))
        assert.deepStrictEqual(exit, Exit.fail(error))
        expect(attempts).toHaveLength(1)
      }
    }))

  it.effect("stops at the first non-transient failure after transient ones", () =>
    Effect.gen(function*() {
      const denied = new Unauthorized({ operation: "test", status: 401, reason: "token expired" })
      const { attempts, effect } = scripted<TransientRegistry | Unauthorized>([transient(), denied, transient()])
      const exit = yield* drive(effect, Retry.schedule(fixed))
      assert.deepStrictEqual(exit, Exit.fail(denied))
      expect(attempts).toEqual([0, 1000])
    }))

  it.effect("does not retry defects or plain errors that merely look transient", () =>
    Effect.gen(function*() {
      const lookalike = { _tag: "TransientRegistry", operation: "test", reason: "not ours" }
      const { attempts, effect } = scripted([lookalike])
      const exit = yield* drive(effect, Retry.schedule(fixed))
      assert.deepStrictEqual(exit, Exit.fail(lookalike))
      expect(attempts).toEqual([0])
    }))

  it.effect("maxRetries 0 makes exactly one attempt", () =>
    Effect.gen(function*() {
      const { attempts, effect } = scripted([transient("only"), transient()])
      const exit = yield* drive(effect, Retry.schedule({ ...fixed, maxRetries: 0 }))
      assert.deepStrictEqual(exit, Exit.fail(transient("only")))
      expect(attempts).toEqual([0])
    }))

  it.effect("Retry-After raises the wait above waitMax", () =>
    Effect.gen(function*() {
      const { attempts, effect } = scripted([transient("429", 10_000), transient()])
      const exit = yield* drive(effect, Retry.schedule(fixed))
      assert.deepStrictEqual(exit, Exit.succeed("ok" as const))
      // 10 s as asked (not the 3 s cap), then back to the schedule: 2 s
      expect(attempts).toEqual([0, 10_000, 12_000])
    }))

  it.effect("a Retry-After shorter than the backoff does not shorten it", () =>
    Effect.gen(function*() {
      const { attempts, effect } = scripted([transient("429", 100), transient("429", 0)])
      yield* drive(effect, Retry.schedule(fixed))
      expect(attempts).toEqual([0, 1000, 3000])
    }))

  it.effect("Retry-After is honoured even with jitter", () =>
    Effect.gen(function*() {
      for (let seed = 0; seed < 10; seed++) {
        const { attempts, effect } = scripted([transient("429", 10_000)])
        yield* drive(effect, Retry.schedule({ ...fixed, jitter: true })).pipe(Effect.withRandom(Random.make(seed)))
        expect(gaps(attempts)).toEqual([10_000])
      }
    }))

  it.effect("a waitMax below waitMin is lifted to waitMin", () =>
    Effect.gen(function*() {
      const { attempts, effect } = scripted([transient(), transient(), transient()])
      yield* drive(effect, Retry.schedule({ maxRetries: 3, waitMin: "2 seconds", waitMax: "1 second", jitter: false }))
      expect(gaps(attempts)).toEqual([2000, 2000, 2000])
    }))

  describe("jitter", () => {
    const policy = { maxRetries: 6, waitMin: "1 second", waitMax: "8 seconds" } as const
    const nominal = [1000, 2000, 4000, 8000, 8000, 8000]
    const waitsFor = (seed: number) =>
      Effect.gen(function*() {
        const { attempts, effect } = scripted(nominal.map(() => transient()))
        const exit = yield* drive(effect, Retry.schedule(policy)).pipe(Effect.withRandom(Random.make(seed)))
        assert.isTrue(Exit.isSuccess(exit))
        return gaps(attempts)
      })

    it.effect("keeps every wait within [0.8, 1.2] × nominal and never above waitMax", () =>
      Effect.gen(function*() {
        for (let seed = 0; seed < 50; seed++) {
          const waits = yield* waitsFor(seed)
          expect(waits).toHaveLength(nominal.length)
          waits.forEach((wait, i) => {
            expect(wait).toBeGreaterThanOrEqual(0.8 * nominal[i]!)
            expect(wait).toBeLessThanOrEqual(Math.min(1.2 * nominal[i]!, 8000))
          })
        }
      }))

    it.effect("is deterministic for a seed and actually random across seeds", () =>
      Effect.gen(function*() {
        expect(yield* waitsFor(42)).toEqual(yield* waitsFor(42))
        const firstWaits = new Set<number>()
        for (let seed = 0; seed < 20; seed++) firstWaits.add((yield* waitsFor(seed))[0]!)
        expect(firstWaits.size).toBeGreaterThan(10)
      }))

    it.effect("still randomises the waits once the backoff reaches waitMax", () =>
      Effect.gen(function*() {
        // Regression: jitter used to be applied before the cap, so once the uncapped backoff passed
        // 1.25 × waitMax (here the 5th and 6th waits: 16 s, 32 s) every wait was exactly waitMax and
        // clients that failed together retried in lockstep.
        const capped: Array<number> = []
        for (let seed = 0; seed < 20; seed++) capped.push(...(yield* waitsFor(seed)).slice(4))
        expect(capped.every((w) => w >= 6400 && w <= 8000)).toBe(true)
        expect(new Set(capped).size).toBeGreaterThan(10)
      }))

    it.effect("jitter: false gives the nominal waits", () =>
      Effect.gen(function*() {
        const { attempts, effect } = scripted(nominal.map(() => transient()))
        yield* drive(effect, Retry.schedule({ ...policy, jitter: false }))
        expect(gaps(attempts)).toEqual(nominal)
      }))
  })

  describe("defaults", () => {
    it("are 2 retries, 1 s, 30 s", () => {
      expect(Retry.defaults.maxRetries).toBe(2)
      expect(Duration.toMillis(Retry.defaults.waitMin)).toBe(1000)
      expect(Duration.toMillis(Retry.defaults.waitMax)).toBe(30_000)
    })

    it.effect("schedule() makes 3 attempts, waiting about 1 s then 2 s", () =>
      Effect.gen(function*() {
        for (let seed = 0; seed < 10; seed++) {
          const { attempts, effect } = scripted([1, 2, 3, 4].map((n) => transient(`attempt ${n}`)))
          const exit = yield* drive(effect, Retry.schedule()).pipe(Effect.withRandom(Random.make(seed)))
          assert.deepStrictEqual(exit, Exit.fail(transient("attempt 3")))
          const [first, second] = gaps(attempts)
          expect(attempts).toHaveLength(3)
          expect(first).toBeGreaterThanOrEqual(800)
          expect(first).toBeLessThanOrEqual(1200)
          expect(second).toBeGreaterThanOrEqual(1600)
          expect(second).toBeLessThanOrEqual(2400)
        }
      }))

    it.effect("schedule({ jitter: false }) waits 1 s then 2 s", () =>
      Effect.gen(function*() {
        const { attempts, effect } = scripted([transient(), transient(), transient()])
        const exit = yield* drive(effect, Retry.schedule({ jitter: false }))
        assert.isTrue(Exit.isFailure(exit))
        expect(attempts).toEqual([0, 1000, 3000])
      }))

    it.effect("the 30 s cap applies by default", () =>
      Effect.gen(function*() {
        const { attempts, effect } = scripted(Array.from({ length: 7 }, () => transient()))
        yield* drive(effect, Retry.schedule({ maxRetries: 7, jitter: false }))
        expect(gaps(attempts)).toEqual([1000, 2000, 4000, 8000, 16_000, 30_000, 30_000])
      }))
  })
})

describe("Retry.parseRetryAfter", () => {
  const now = Date.UTC(2015, 9, 21, 7, 27, 50) // Wed, 21 Oct 2015 07:27:50 GMT

  it("reads delay-seconds", () => {
    expect(Retry.parseRetryAfter("120", now)).toBe(120_000)
    expect(Retry.parseRetryAfter("0", now)).toBe(0)
    expect(Retry.parseRetryAfter(" 5 ", now)).toBe(5000)
    expect(Retry.parseRetryAfter("007", now)).toBe(7000)
  })

  it("caps delay-seconds at 24 hours, however large", () => {
    expect(Retry.parseRetryAfter("86400", now)).toBe(86_400_000)
    expect(Retry.parseRetryAfter("86401", now)).toBe(86_400_000)
    expect(Retry.parseRetryAfter("99999999999999999999999", now)).toBe(86_400_000)
  })

  it("reads the three HTTP-date forms, as GMT", () => {
    expect(Retry.parseRetryAfter("Wed, 21 Oct 2015 07:28:00 GMT", now)).toBe(10_000) // IMF-fixdate
    expect(Retry.parseRetryAfter("Wednesday, 21-Oct-15 07:28:00 GMT", now)).toBe(10_000) // RFC 850
    expect(Retry.parseRetryAfter("Wed Oct 21 07:28:00 2015", now)).toBe(10_000) // asctime
    expect(Retry.parseRetryAfter("Wed Oct  1 07:28:00 2015", Date.UTC(2015, 9, 1, 7, 27, 0))).toBe(60_000)
    expect(Retry.parseRetryAfter("wed, 21 oct 2015 07:28:00 gmt", now)).toBe(10_000)
  })

  it("reads an asctime date as GMT whatever the host's time zone", () => {
    const saved = process.env["TZ"]
    process.env["TZ"] = "America/New_York"
    try {
      // Date.parse reads this zone-less form in local time, which here would be 5 hours late.
      expect(Retry.parseRetryAfter("Wed Oct 21 07:28:00 2015", now)).toBe(10_000)
    } finally {
      if (saved === undefined) delete process.env["TZ"]
      else process.env["TZ"] = saved
    }
  })

  it("gives 0 for a date in the past and caps a far-future date at 24 hours", () => {
    expect(Retry.parseRetryAfter("Wed, 21 Oct 2015 07:27:00 GMT", now)).toBe(0)
    expect(Retry.parseRetryAfter("Sun, 06 Nov 1994 08:49:37 GMT", now)).toBe(0)
    expect(Retry.parseRetryAfter("Thu, 01 Jan 2099 00:00:00 GMT", now)).toBe(86_400_000)
  })

  it("rejects anything else", () => {
    for (
      const garbage of [
        "",
        "   ",
        "soon",
        "-5",
        "1.5",
        "+120",
        "1e3",
        "0x10",
        "5 seconds",
        "1 2",
        "foo 12",
        "2015-10-21T07:28:00Z",
        "Wed, 21 Oct 2015 07:28:00 PST",
        "Wed, 32 Oct 2015 07:28:00 GMT",
        "Mon, 30 Feb 2015 07:28:00 GMT",
        "Wed, 21 Foo 2015 07:28:00 GMT",
        "Wed, 21 Oct 2015 24:28:00 GMT"
      ]
    ) {
      expect(Retry.parseRetryAfter(garbage, now), garbage).toBeUndefined()
    }
    expect(Retry.parseRetryAfter(undefined, now)).toBeUndefined()
  })

  it.prop(
    "never throws and returns undefined or 0..24 h",
    [
      FastCheck.oneof(
        FastCheck.string(),
        FastCheck.nat().map(String),
        FastCheck.date({ min: new Date(0), max: new Date(4102444800000) }).map((d) => d.toUTCString())
      ),
      FastCheck.integer({ min: 0, max: 4102444800000 })
    ],
    ([header, nowMillis]) => {
      const ms = Retry.parseRetryAfter(header, nowMillis)
      return ms === undefined || (Number.isFinite(ms) && ms >= 0 && ms <= 86_400_000)
    }
  )

  it.prop(
    "reads back any IMF-fixdate up to 24 h ahead",
    [FastCheck.integer({ min: 0, max: 4000000000 }), FastCheck.integer({ min: 0, max: 86_400 })],
    ([nowSeconds, aheadSeconds]) =>
      Retry.parseRetryAfter(new Date((nowSeconds + aheadSeconds) * 1000).toUTCString(), nowSeconds * 1000) ===
        aheadSeconds * 1000
  )
})

describe("retries in MemoryRegistry", () => {
  const repository = "tfstate/retry"
  const manifest = {
    mediaType: MediaType.ociManifest,
    bytes: new TextEncoder().encode(JSON.stringify({ schemaVersion: 2, mediaType: MediaType.ociManifest }))
  }
  const digest = Digest.sha256(manifest.bytes)
  const retry = fixed

  /** A registry holding `manifest` at `latest`, then switched to `faults`, with an empty request log. */
  const withRegistry = <A, E>(
    faults: MemoryRegistry.FaultPlan,
    body: (registry: Service, control: MemoryRegistry.Control) => Effect.Effect<A, E>
  ) =>
    Effect.gen(function*() {
      const registry = yield* Registry
      const control = yield* MemoryRegistry.MemoryRegistryControl
      yield* registry.putManifest(repository, "latest", manifest)
      yield* control.setFaults(faults)
      yield* control.clearRequests
      return yield* body(registry, control)
    }).pipe(Effect.provide(MemoryRegistry.layer({ retry })))

  const operations = (control: MemoryRegistry.Control) =>
    Effect.map(control.requests, (log) => log.map((r) => r.operation))

  it.effect("layer({ faults: failFirst(2, 503) }) fails the first two requests", () =>
    Effect.gen(function*() {
      const control = yield* MemoryRegistry.MemoryRegistryControl
      const registry = yield* Registry
      const fiber = yield* Effect.fork(registry.getManifest(repository, "latest"))
      yield* TestClock.adjust("1 minute")
      expect(Option.isNone(yield* Fiber.join(fiber))).toBe(true)
      expect(yield* operations(control)).toEqual(["getManifest", "getManifest", "getManifest"])
    }).pipe(
      Effect.provide(MemoryRegistry.layer({ faults: MemoryRegistry.failFirst(2, { status: 503 }), retry }))
    ))

  it.effect("getManifest succeeds after two 503s, at t = 0, 1 s, 3 s", () =>
    withRegistry(MemoryRegistry.failFirst(2, { status: 503 }), (registry, control) =>
      Effect.gen(function*() {
        const fiber = yield* Effect.fork(registry.getManifest(repository, "latest"))
        yield* TestClock.adjust(0)
        expect(yield* control.requests).toHaveLength(1)
        yield* TestClock.adjust(1000)
        expect(yield* control.requests).toHaveLength(2)
        yield* TestClock.adjust(1999)
        expect(yield* control.requests).toHaveLength(2)
        yield* TestClock.adjust(1)
        const got = yield* Fiber.join(fiber)
        assert.isTrue(Option.isSome(got))
        expect(Option.getOrThrow(got).digest).toBe(digest)
        expect(yield* operations(control)).toEqual(["getManifest", "getManifest", "getManifest"])
      })))

  it.effect("putManifest by tag is not retried", () =>
    withRegistry(MemoryRegistry.failFirst(2, { status: 503 }), (registry, control) =>
      Effect.gen(function*() {
        const fiber = yield* Effect.fork(registry.putManifest(repository, "v2", manifest))
        yield* TestClock.adjust("1 minute")
        const exit = yield* Fiber.await(fiber)
        assert.isTrue(Exit.isFailure(exit))
        const error = yield* Effect.flip(exit)
        assert.instanceOf(error, TransientRegistry)
        expect(error.status).toBe(503)
        expect(yield* operations(control)).toEqual(["putManifest"])
        expect((yield* control.tags(repository)).has("v2")).toBe(false)
      })))

  it.effect("putManifest by digest is retried", () =>
    withRegistry(MemoryRegistry.failFirst(2, { status: 503 }), (registry, control) =>
      Effect.gen(function*() {
        const fiber = yield* Effect.fork(registry.putManifest(repository, digest, manifest))
        yield* TestClock.adjust("1 minute")
        expect(yield* Fiber.join(fiber)).toBe(digest)
        expect(yield* operations(control)).toEqual(["putManifest", "putManifest", "putManifest"])
      })))

  it.effect("a non-transient fault (400) fails at once with RegistryError", () =>
    withRegistry(MemoryRegistry.failFirst(2, { status: 400 }), (registry, control) =>
      Effect.gen(function*() {
        const fiber = yield* Effect.fork(registry.getManifest(repository, "latest"))
        yield* TestClock.adjust("1 minute")
        const error = yield* Effect.flip(Fiber.join(fiber))
        assert.instanceOf(error, RegistryError)
        expect(error.status).toBe(400)
        expect(yield* control.requests).toHaveLength(1)
      })))

  it.effect("a 429 with Retry-After 10 s is waited out, even with waitMax 3 s", () =>
    withRegistry(MemoryRegistry.failFirst(1, { status: 429, retryAfterMillis: 10_000 }), (registry, control) =>
      Effect.gen(function*() {
        const fiber = yield* Effect.fork(registry.getManifest(repository, "latest"))
        yield* TestClock.adjust(9_999)
        expect(yield* control.requests).toHaveLength(1)
        assert.isTrue(Option.isNone(yield* Fiber.poll(fiber)))
        yield* TestClock.adjust(1)
        assert.isTrue(Option.isSome(yield* Fiber.join(fiber)))
        expect(yield* control.requests).toHaveLength(2)
        expect(yield* Clock.currentTimeMillis).toBe(10_000)
      })))

  it.effect("gives up after maxRetries with the last TransientRegistry", () =>
    withRegistry(MemoryRegistry.failFirst(10, { status: 502 }), (registry, control) =>
      Effect.gen(function*() {
        const fiber = yield* Effect.fork(registry.getManifest(repository, "latest"))
        yield* TestClock.adjust("1 minute")
        const error = yield* Effect.flip(Fiber.join(fiber))
        assert.instanceOf(error, TransientRegistry)
        expect(error.status).toBe(502)
        expect(yield* control.requests).toHaveLength(4)
      })))

  it.effect("without a retry option nothing is retried", () =>
    Effect.gen(function*() {
      const registry = yield* Registry
      const control = yield* MemoryRegistry.MemoryRegistryControl
      const fiber = yield* Effect.fork(registry.getManifest(repository, "latest"))
      yield* TestClock.adjust("1 minute")
      assert.instanceOf(yield* Effect.flip(Fiber.join(fiber)), TransientRegistry)
      expect(yield* control.requests).toHaveLength(1)
    }).pipe(Effect.provide(MemoryRegistry.layer({ faults: MemoryRegistry.failFirst(2, { status: 503 }) }))))
})
