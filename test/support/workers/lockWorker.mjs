// A lock contender in its own OS process, for the multi-process stress test: `rounds` times,
// lock → append "enter" → short critical section → append "leave" → unlock, against a real
// registry, through the compiled library (dist/). Prints one JSON line of statistics.
import { appendFileSync } from "node:fs"
import { Duration, Effect, Layer, Random } from "effect"
import { Credentials, HttpRegistry, LockInfo, RateLimiter, StateBackend } from "../../../dist/index.js"

const [host, repository, roundsText, logFile, id, ttlText] = process.argv.slice(2)
const rounds = Number(roundsText)
const ttlSeconds = Number(ttlText ?? "0")

const registry = HttpRegistry.layerNode({ registry: host, retry: { maxRetries: 4, waitMin: "50 millis", waitMax: "1 second" } }).pipe(
  Layer.provide(Credentials.layerNone),
  Layer.provide(RateLimiter.layerUnlimited)
)
const backend = StateBackend.layer({ repository, lockTtl: ttlSeconds > 0 ? Duration.seconds(ttlSeconds) : undefined }).pipe(
  Layer.provide(registry)
)

const program = Effect.gen(function*() {
  const sm = yield* (yield* StateBackend.StateBackend).stateManager("default")
  const waits = []
  let conflicts = 0
  for (let round = 0; round < rounds; round++) {
    const info = LockInfo.make({ ID: `${id}-${round}`, Who: `worker-${id}`, Operation: "OperationTypeApply" })
    const started = performance.now()
    let lockId
    for (;;) {
      const attempt = yield* Effect.either(sm.lock(info))
      if (attempt._tag === "Right") {
        lockId = attempt.right
        break
      }
      if (attempt.left._tag !== "LockConflict") return yield* Effect.fail(attempt.left)
      conflicts++
      // Terraform's -lock-timeout waits too; jitter keeps contenders apart.
      yield* Effect.sleep(Duration.millis(yield* Random.nextIntBetween(5, 60)))
    }
    waits.push(performance.now() - started)
    appendFileSync(logFile, `enter ${id} ${round} ${process.hrtime.bigint()}\n`)
    yield* Effect.sleep(Duration.millis(yield* Random.nextIntBetween(0, 4)))
    appendFileSync(logFile, `leave ${id} ${round} ${process.hrtime.bigint()}\n`)
    yield* sm.unlock(lockId)
  }
  return { id, rounds, conflicts, waits }
})

Effect.runPromise(program.pipe(Effect.provide(backend), Effect.scoped)).then(
  (stats) => {
    process.stdout.write(JSON.stringify(stats) + "\n")
  },
  (error) => {
    process.stderr.write(`worker ${id} failed: ${error}\n`)
    process.exit(1)
  }
)
