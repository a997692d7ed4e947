/**
 * Crash safety: a writer process (`test/support/workers/crashWriter.mjs`, the compiled library)
 * puts states of a few MiB in a loop against a real registry and is killed with SIGKILL at a random
 * point of a `put` — after a random delay, or as it enters a chosen phase (reading the current
 * state, checking the config blob, starting the upload, sending the blob, publishing the tag).
 *
 * After every kill:
 * - the state tag resolves to a complete state: manifest and layer verified here with plain
 *   `fetch`, every digest and size recomputed (and read once more through the library);
 * - its content is the last state the writer finished or the one it was writing (each state
 *   carries its serial, and the writer reported the sha256 of what it was putting);
 * - the next lock → put → unlock works.
 *
 * Prints trials, the phases killed in, how often the new state had landed, and data lost (must be 0).
 *
 * Trials: `ORAS_STATE_CRASH_TRIALS`, else 200 with `ORAS_STATE_SLOW_TESTS=1`, else 50.
 */
import { afterAll, describe, expect, inject, it } from "@effect/vitest"
import { Effect, Layer, Option } from "effect"
import { type ChildProcessWithoutNullStreams, spawn } from "node:child_process"
import { createHash } from "node:crypto"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import * as Credentials from "../../src/Credentials.js"
import * as HttpRegistry from "../../src/HttpRegistry.js"
import * as LockInfo from "../../src/LockInfo.js"
import * as RateLimiter from "../../src/RateLimiter.js"
import * as StateBackend from "../../src/StateBackend.js"
import { readStoredState } from "../support/stateCheck.js"

const registries = inject("registries")
const target = registries.plain
const slow = process.env["ORAS_STATE_SLOW_TESTS"] === "1"
const TRIALS = Number(process.env["ORAS_STATE_CRASH_TRIALS"] ?? (slow ? 200 : 50))
// "A few MiB": 0.5–2 MiB by default, 1–4 MiB in the slow run.
const MIN_BYTES = slow ? 1024 * 1024 : 512 * 1024
const MAX_BYTES = slow ? 4 * 1024 * 1024 : 2 * 1024 * 1024
/** Trials run in this many lanes at once (each its own repository and writers). */
const LANES = 2
const run = `c${Date.now().toString(36)}`
const workspace = "default"
const worker = join(fileURLToPath(new URL("../support/workers/", import.meta.url)), "crashWriter.mjs")

const sha256 = (data: Uint8Array) => createHash("sha256").update(data).digest("hex")
const serialOf = (data: Uint8Array): number => (JSON.parse(new TextDecoder().decode(data)) as { serial: number }).serial

const backend = (repository: string) => StateBackend.layer({ repository }).pipe(
  Layer.provide(
    HttpRegistry.layerNode({ registry: target.host }).pipe(
      Layer.provide(Credentials.layerNone),
      Layer.provide(RateLimiter.layerUnlimited)
    )
  )
)

/** What the parent writes between trials: small states (the worker's are the big ones). */
const parentState = (serial: number) =>
  new TextEncoder().encode(JSON.stringify({ version: 4, serial, lineage: "crash-test", outputs: {} }))

// ---------------------------------------------------------------------------------------------
// Writer processes (spawned ahead, so their start-up overlaps the previous trial)
// ---------------------------------------------------------------------------------------------

interface Writer {
  readonly child: ChildProcessWithoutNullStreams
  readonly lines: Array<string>
  readonly ready: Promise<void>
  readonly exited: Promise<void>
  /** Called with every line as it arrives. */
  onLine: (line: string) => void
}

const spawnWriter = (repository: string): Writer => {
  const child = spawn(process.execPath, [worker, target.host, repository, workspace, String(MIN_BYTES), String(MAX_BYTES)], {
    stdio: ["pipe", "pipe", "pipe"]
  })
  let stderr = ""
  let buffered = ""
  const lines: Array<string> = []
  let markReady: () => void = () => undefined
  let failReady: (e: Error) => void = () => undefined
  const ready = new Promise<void>((resolve, reject) => {
    markReady = resolve
    failReady = reject
  })
  const writer: Writer = {
    child,
    lines,
    ready,
    exited: new Promise<void>((resolve) => child.on("exit", () => resolve())),
    onLine: () => undefined
  }
  child.stdout.on("data", (chunk: Buffer) => {
    buffered += chunk.toString()
    let newline = buffered.indexOf("\n")
    while (newline >= 0) {
      const line = buffered.slice(0, newline)
      buffered = buffered.slice(newline + 1)
      lines.push(line)
      if (line === "ready") markReady()
      writer.onLine(line)
      newline = buffered.indexOf("\n")
    }
  })
  child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()))
  child.on("exit", (code, signal) => {
    if (signal !== "SIGKILL") failReady(new Error(`writer exited (${code ?? signal}) before it was killed: ${stderr}`))
  })
  return writer
}

const spawned: Array<Writer> = []
afterAll(() => {
  for (const w of spawned) if (w.child.exitCode === null && w.child.signalCode === null) w.child.kill("SIGKILL")
})

// ---------------------------------------------------------------------------------------------
// Kill plans: a random delay, or a phase of the put (+ a random 0–3 ms)
// ---------------------------------------------------------------------------------------------

type Plan =
  | { readonly _tag: "delay"; readonly millis: number }
  | { readonly _tag: "phase"; readonly phase: string; readonly pattern: RegExp; readonly occurrence: number; readonly extraMillis: number }

const phases: ReadonlyArray<readonly [string, RegExp]> = [
  ["hashing (before any request)", /^start /],
  ["reading the current state", /^req GET .*\/manifests\/state-/],
  ["checking the config blob", /^req HEAD .*\/blobs\//],
  ["starting the upload", /^req POST .*\/blobs\/uploads\//],
  ["sending the blob", /^req PUT .*\/blobs\/uploads\//],
  ["publishing the tag", /^req PUT .*\/manifests\/state-/]
]

const randomInt = (min: number, max: number) => min + Math.floor(Math.random() * (max - min + 1))

const planFor = (trial: number, typicalPutMillis: number): Plan => {
  if (trial % 2 === 0) return { _tag: "delay", millis: (0.2 + Math.random() * 2) * typicalPutMillis }
  const [phase, pattern] = phases[randomInt(0, phases.length - 1)]!
  // The config blob is checked by the first put of a process only.
  const occurrence = phase === "checking the config blob" ? 1 : randomInt(1, 2)
  // The tag PUT is small: a longer extra delay lets some of them land before the kill.
  return { _tag: "phase", phase, pattern, occurrence, extraMillis: randomInt(0, phase === "publishing the tag" ? 20 : 3) }
}

// ---------------------------------------------------------------------------------------------
// The test
// ---------------------------------------------------------------------------------------------

interface Stats {
  trials: number
  landedNew: number
  keptOld: number
  dataLost: number
  putsCompleted: number
  readonly byPhase: Map<string, number>
  readonly problems: Array<string>
}

/** `trials` kills of writers of `repository`, one after the other (the next writer spawned ahead). */
const lane = (lane: number, trials: number, stats: Stats) =>
  Effect.gen(function*() {
    const repository = `crash/${run}-${lane}`
    const problems = stats.problems
    const sm = yield* (yield* StateBackend.StateBackend).stateManager(workspace)
    // Baseline.
    let serial = 1
    let expected = new Map<number, string>([[serial, sha256(parentState(serial))]])
    yield* sm.put(parentState(serial))
    let typicalPutMillis = 80
    const queue: Array<Writer> = [spawnWriter(repository)]
    spawned.push(...queue)

    for (let i = 0; i < trials; i++) {
      const trial = i * LANES + lane
      const writer = queue.shift()!
      const next = spawnWriter(repository)
      spawned.push(next)
      queue.push(next)
      yield* Effect.promise(() => writer.ready)

      // Go, and kill per plan.
      const plan = planFor(i, typicalPutMillis)
      const phaseName = plan._tag === "delay" ? "random delay" : plan.phase
      stats.byPhase.set(phaseName, (stats.byPhase.get(phaseName) ?? 0) + 1)
      const kill = () => writer.child.kill("SIGKILL")
      if (plan._tag === "phase") {
        let seen = 0
        writer.onLine = (line) => {
          if (plan.pattern.test(line) && ++seen === plan.occurrence) {
            if (plan.extraMillis === 0) kill()
            else setTimeout(kill, plan.extraMillis)
          }
        }
      }
      writer.child.stdin.write(`go ${serial + 1}\n`)
      const deadline = setTimeout(kill, plan._tag === "delay" ? plan.millis : 5_000)
      yield* Effect.promise(() => writer.exited)
      clearTimeout(deadline)
      // A request the writer had fully sent may still be processed by the registry after the
      // writer died (its tag PUT landing a moment later): let it settle before looking.
      yield* Effect.sleep("100 millis")

      // What the writer reported: finished states and the one in flight.
      for (const line of writer.lines) {
        const [kind, s, value, extra] = line.split(" ")
        if (kind === "start") expected.set(Number(s), value!)
        if (kind === "done") {
          stats.putsCompleted++
          serial = Number(s)
          typicalPutMillis = 0.6 * typicalPutMillis + 0.4 * Number(extra)
        }
      }
      const started = writer.lines.filter((l) => l.startsWith("start ")).map((l) => Number(l.split(" ")[1]))
      const inFlight = started.length > 0 && started[started.length - 1]! > serial ? started[started.length - 1] : undefined
      const allowed = inFlight === undefined ? [serial] : [serial, inFlight]

      // The tag: complete and verified, old or new.
      stats.trials++
      const stored = yield* Effect.promise(() =>
        readStoredState(target.url, repository, `state-${workspace}`).then((s) => ({ s }), (e: unknown) => ({ e: String(e) }))
      )
      let current: number | undefined
      if ("e" in stored || stored.s === undefined) {
        stats.dataLost++
        problems.push(`trial ${trial} (${phaseName}): the state tag is ${"e" in stored ? `broken: ${stored.e}` : "gone"}`)
      } else {
        current = serialOf(stored.s.data)
        if (!allowed.includes(current) || expected.get(current) !== sha256(stored.s.data)) {
          stats.dataLost++
          problems.push(`trial ${trial} (${phaseName}): the state holds serial ${current}, expected ${allowed.join(" or ")}`)
        } else if (current === inFlight) {
          stats.landedNew++
        } else {
          stats.keptOld++
        }
        // The library reads the same bytes (and verifies them itself).
        const viaLibrary = yield* sm.get
        const libraryHash = Option.map(viaLibrary, (p) => sha256(p.data))
        if (Option.isNone(libraryHash) || ![...allowed].some((s) => expected.get(s) === libraryHash.value)) {
          problems.push(`trial ${trial}: the library read neither the old nor the new state`)
        } else if (libraryHash.value !== sha256(stored.s.data)) {
          problems.push(`trial ${trial}: the state tag moved after the writer died and settled`)
        }
      }
      serial = current ?? serial

      // The next lock → put → unlock works.
      const following = serial + 1
      const after = yield* Effect.either(Effect.gen(function*() {
        const lockId = yield* sm.lock(LockInfo.make({ ID: `after-crash-${trial}`, Who: "crash@test" }))
        yield* sm.put(parentState(following), { lockId })
        yield* sm.unlock(lockId)
      }))
      if (after._tag === "Left") {
        problems.push(`trial ${trial}: the next lock/put/unlock failed: ${after.left.message}`)
      } else {
        serial = following
        expected = new Map([[serial, sha256(parentState(serial))]])
      }
    }
    for (const w of queue) w.child.kill("SIGKILL")
  }).pipe(Effect.provide(backend(`crash/${run}-${lane}`)))

describe("crash safety (real registry, SIGKILL)", () => {
  it.live(`a writer SIGKILLed at random points of put, ${TRIALS} times: the state is always old or new, never torn`, () =>
    Effect.gen(function*() {
      const stats: Stats = { trials: 0, landedNew: 0, keptOld: 0, dataLost: 0, putsCompleted: 0, byPhase: new Map(), problems: [] }
      yield* Effect.forEach(
        Array.from({ length: LANES }, (_, i) => i),
        (i) => lane(i, Math.floor(TRIALS / LANES) + (i < TRIALS % LANES ? 1 : 0), stats),
        { concurrency: "unbounded", discard: true }
      )
      const phasesText = [...stats.byPhase].map(([p, n]) => `${p} ${n}`).join(", ")
      console.log(
        `crash safety: ${stats.trials} trials (SIGKILL during put of ${MIN_BYTES / 1024}–${MAX_BYTES / 1024} KiB states; ${phasesText}), ` +
          `${stats.putsCompleted} puts completed before the kills, in-flight state landed ${stats.landedNew}×, ` +
          `previous state kept ${stats.keptOld}×, data lost = ${stats.dataLost}, problems = ${stats.problems.length}`
      )
      expect(stats.problems).toEqual([])
      expect(stats.dataLost).toBe(0)
      expect(stats.trials).toBe(TRIALS)
      // The kills fell on both sides of the commit point (the tag PUT): some after a new state
      // had landed, some before.
      if (TRIALS >= 50) {
        expect(stats.putsCompleted + stats.landedNew).toBeGreaterThan(0)
        expect(stats.keptOld).toBeGreaterThan(0)
      }
    }), slow ? 600_000 : 120_000)
})
