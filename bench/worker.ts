/**
 * Child-process tasks of the benchmark (peak RSS is per process, so each measurement gets a fresh
 * one). Prints one JSON line on stdout.
 *
 *   worker.js transfer <host> <repository> <ours|raw> <put|get> <bytes> <none|gzip> <name>
 *   worker.js contend  <host> <repository> <id> <milliseconds>
 *   worker.js getloop  <host> <repository> <ours|raw|rawv|raw-in-effect|platform> <iterations>
 */
import * as Fs from "node:fs"
import { constants, PerformanceObserver } from "node:perf_hooks"
import { gcLoopPlatformTag, gcLoopRawTag, gcLoopWorkspace, makeState } from "./data.js"
import { makeRawClient } from "./raw.js"

// The library (and Effect) is loaded only by the tasks that use it: the raw client's process is
// Node and undici alone, so that its peak RSS is the practical floor.
const library = async () => {
  const [{ makeClient }, Duration, Effect, Random, LockInfo] = await Promise.all([
    import("./client.js"),
    import("effect/Duration"),
    import("effect/Effect"),
    import("effect/Random"),
    import("../src/LockInfo.js")
  ])
  return { makeClient, Duration, Effect, Random, LockInfo }
}

/** Resident set now and at its peak (bytes), from /proc (Linux). */
const memory = (): { rss: number; peak: number } => {
  const status = Fs.readFileSync("/proc/self/status", "utf8")
  const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, "m").exec(status)?.[1] ?? NaN) * 1024
  return { rss: kb("VmRSS"), peak: kb("VmHWM") }
}

/**
 * Collect garbage (the worker runs with --expose-gc) and restart the peak-RSS watermark at the
 * current RSS (Linux `clear_refs` 5); returns the RSS.
 */
const settle = (): number => {
  const gc = (globalThis as { gc?: () => void }).gc
  gc?.()
  try {
    Fs.writeFileSync("/proc/self/clear_refs", "5")
  } catch {
    // Without it, the peak covers the whole process life.
  }
  return memory().rss
}

const transfer = async (args: ReadonlyArray<string>) => {
  const [host, repository, who, op, bytesText, compression, name] = args as [string, string, string, string, string, "none" | "gzip", string]
  const size = Number(bytesText)
  const gzip = compression === "gzip"
  // "rawv": the raw client, verifying the blob it reads (get).
  const raw = who === "raw" || who === "rawv" ? makeRawClient(host) : undefined
  const lib = who === "ours" ? await library() : undefined
  const ours = lib === undefined ? undefined : await lib.makeClient(host, { repository, compression })
  const idle = settle()
  const data = op === "put" ? makeState(size, 7) : undefined
  // The garbage of generating the state is not the operation's: collect it, then measure the
  // peak from here on.
  const before = settle()
  const started = performance.now()
  let received = 0
  if (raw !== undefined) {
    if (data !== undefined) await raw.put(repository, name, data, gzip)
    else received = (await raw.get(repository, name, who === "rawv")).byteLength
  } else if (ours !== undefined) {
    const sm = await ours.manager(name)
    if (data !== undefined) await ours.run(sm.put(data))
    else {
      const payload = await ours.run(sm.get)
      received = payload._tag === "Some" ? payload.value.data.byteLength : 0
    }
  }
  const seconds = (performance.now() - started) / 1000
  const { peak } = memory()
  if (op === "get" && received !== size) throw new Error(`got ${received} bytes, expected ${size}`)
  await raw?.close()
  await ours?.dispose()
  return { seconds, idle, before, peak }
}

const contend = async (args: ReadonlyArray<string>) => {
  const [host, repository, id, durationText] = args as [string, string, string, string]
  const { Duration, Effect, LockInfo, makeClient, Random } = await library()
  const client = await makeClient(host, { repository })
  const sm = await client.manager("contended")
  const until = performance.now() + Number(durationText)
  const stats = { acquired: 0, conflicts: 0, lockMs: [] as Array<number>, waitMs: [] as Array<number> }
  await client.run(Effect.gen(function*() {
    for (let round = 0; performance.now() < until; round++) {
      const info = LockInfo.make({ ID: `${id}-${round}`, Who: `bench-${id}`, Operation: "OperationTypeApply" })
      const waitStart = performance.now()
      for (;;) {
        const t = performance.now()
        const attempt = yield* Effect.either(sm.lock(info))
        if (attempt._tag === "Right") {
          stats.lockMs.push(performance.now() - t)
          break
        }
        if (attempt.left._tag !== "LockConflict") return yield* Effect.fail(attempt.left)
        stats.conflicts++
        // What Terraform's -lock-timeout does: wait a little, try again.
        yield* Effect.sleep(Duration.millis(yield* Random.nextIntBetween(5, 60)))
      }
      stats.waitMs.push(performance.now() - waitStart)
      stats.acquired++
      yield* sm.unlock(info.ID)
    }
  }))
  await client.dispose()
  return stats
}

/**
 * Back-to-back gets of one 1 MiB state by one client, alone in its process, with V8's collections
 * counted: what each client costs the garbage collector, and what that does to its latency.
 * `raw-in-effect` is the verifying raw client run as one Effect (`Effect.runPromise` of an
 * `Effect.promise` around it): the Effect runtime and nothing else of ours.
 */
const getLoop = async (args: ReadonlyArray<string>) => {
  const [host, repository, who, iterationsText] = args as [string, string, string, string]
  const iterations = Number(iterationsText)
  let get: () => Promise<unknown>
  let close: () => Promise<void>
  if (who === "ours") {
    const lib = await library()
    const client = await lib.makeClient(host, { repository })
    const sm = await client.manager(gcLoopWorkspace)
    get = () => client.run(sm.get)
    close = client.dispose
  } else if (who === "platform") {
    const { makePlatformClient } = await import("./platform.js")
    const platform = await makePlatformClient(host)
    get = () => platform.get(repository, gcLoopPlatformTag)
    close = platform.close
  } else {
    const raw = makeRawClient(host)
    const verify = who !== "raw"
    if (who === "raw-in-effect") {
      const Effect = await import("effect/Effect")
      get = () => Effect.runPromise(Effect.promise(() => raw.get(repository, gcLoopRawTag, verify)))
    } else {
      get = () => raw.get(repository, gcLoopRawTag, verify)
    }
    close = raw.close
  }
  for (let i = 0; i < 50; i++) await get()
  let majors = 0
  let pauseMs = 0
  const observer = new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) {
      pauseMs += entry.duration
      if ((entry.detail as { kind?: number } | undefined)?.kind === constants.NODE_PERFORMANCE_GC_MAJOR) majors++
    }
  })
  observer.observe({ entryTypes: ["gc"] })
  const times: Array<number> = []
  for (let i = 0; i < iterations; i++) {
    const started = performance.now()
    await get()
    times.push(performance.now() - started)
  }
  // GC entries are delivered asynchronously.
  await new Promise((resolve) => setTimeout(resolve, 20))
  observer.disconnect()
  await close()
  return { times, majors, pauseMs }
}

const [task, ...rest] = process.argv.slice(2)
const main = task === "transfer"
  ? transfer(rest)
  : task === "contend"
  ? contend(rest)
  : task === "getloop"
  ? getLoop(rest)
  : Promise.reject(new Error(`unknown task ${task}`))
main.then(
  (result) => {
    process.stdout.write(`${JSON.stringify(result)}\n`)
  },
  (error: unknown) => {
    process.stderr.write(`bench worker failed: ${error instanceof Error ? error.stack : String(error)}\n`)
    process.exit(1)
  }
)
