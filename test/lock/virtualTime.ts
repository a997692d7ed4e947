/**
 * A deterministic virtual-time scheduler for model checks: a `Clock` whose `sleep` parks the
 * fiber in a priority queue, and a driver that always wakes the earliest sleeper, letting it run
 * until it sleeps again. With synchronous registry operations (MemoryRegistry), the whole run is a
 * pure function of the sleep durations chosen — no real time passes (TestClock, by contrast,
 * waits real milliseconds per wake-up to see fibers settle, which is too slow for 10,000 runs).
 */
import { Clock, Deferred, Duration, Effect } from "effect"

interface Sleeper {
  readonly wakeAt: number
  readonly seq: number
  readonly wake: Deferred.Deferred<void>
}

export const makeVirtualTime = () => {
  let now = 0
  let seq = 0
  const queue: Array<Sleeper> = []

  const push = (sleeper: Sleeper) => {
    // Keep the queue sorted by (wakeAt, seq): few entries, insertion is cheap.
    let i = queue.length
    while (i > 0 && (queue[i - 1]!.wakeAt > sleeper.wakeAt ||
      (queue[i - 1]!.wakeAt === sleeper.wakeAt && queue[i - 1]!.seq > sleeper.seq))) i--
    queue.splice(i, 0, sleeper)
  }

  const clock: Clock.Clock = {
    [Clock.ClockTypeId]: Clock.ClockTypeId,
    unsafeCurrentTimeMillis: () => now,
    currentTimeMillis: Effect.sync(() => now),
    unsafeCurrentTimeNanos: () => BigInt(now) * 1_000_000n,
    currentTimeNanos: Effect.sync(() => BigInt(now) * 1_000_000n),
    sleep: (duration: Duration.Duration) =>
      Effect.flatMap(Deferred.make<void>(), (wake) =>
        Effect.suspend(() => {
          push({ wakeAt: now + Math.max(0, Duration.toMillis(duration)), seq: seq++, wake })
          return Deferred.await(wake)
        }))
  }

  // Let every runnable fiber run until it parks again (synchronous work settles in a few ticks).
  const settle = Effect.gen(function*() {
    for (let i = 0; i < 6; i++) yield* Effect.yieldNow()
  })

  /** Wake sleepers in time order until none is left or `until` (virtual ms) is reached. */
  const run = (until: number) =>
    Effect.gen(function*() {
      yield* settle
      for (;;) {
        while (queue.length > 0 && queue[0]!.wakeAt <= until) {
          const next = queue.shift()!
          now = Math.max(now, next.wakeAt)
          yield* Deferred.succeed(next.wake, undefined)
          yield* settle
        }
        // A fiber still finishing synchronous work may park a moment later: look again.
        yield* Effect.repeatN(Effect.yieldNow(), 50)
        if (queue.length === 0 || queue[0]!.wakeAt > until) return
      }
    })

  return { clock, run, now: () => now, pending: () => queue.length } as const
}
