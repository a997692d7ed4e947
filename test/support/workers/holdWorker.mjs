// Takes a lock with a lease through `withLock` (renewing it) and holds it until killed.
// Prints "locked <id>" once it holds the lock.
import { Duration, Effect, Layer } from "effect"
import { Credentials, HttpRegistry, LockInfo, RateLimiter, StateBackend } from "../../../dist/index.js"

const [host, repository, ttlText] = process.argv.slice(2)
const registry = HttpRegistry.layerNode({ registry: host }).pipe(
  Layer.provide(Credentials.layerNone),
  Layer.provide(RateLimiter.layerUnlimited)
)
const backend = StateBackend.layer({ repository, lockTtl: Duration.seconds(Number(ttlText)) }).pipe(Layer.provide(registry))

const program = Effect.gen(function*() {
  const sm = yield* (yield* StateBackend.StateBackend).stateManager("default")
  yield* sm.withLock(LockInfo.make({ ID: "doomed-holder", Who: "victim@host" }), () =>
    Effect.gen(function*() {
      process.stdout.write("locked doomed-holder\n")
      yield* Effect.never
    }))
})
Effect.runPromise(program.pipe(Effect.provide(backend), Effect.scoped))
