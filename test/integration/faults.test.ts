/**
 * Fault injection: `StateManager` get / put / lock / unlock through `HttpRegistry` → the fault
 * proxy (`test/support/faultProxy.ts`) → a real distribution 2.8 registry.
 *
 * Each fault is injected at *every* request of each operation in turn (the i-th matching request,
 * i = 0, 1, … until the operation has no i-th request): 503 bursts (within and beyond the retry
 * budget), 429 with `Retry-After`, a connection reset mid-upload, a truncated body, a response that
 * never comes (head) or stops mid-body, and a request that lands but whose response is lost.
 *
 * After every run:
 * - the operation succeeded, or failed with one of the library's tagged errors (never a defect or
 *   an interruption: the Cause is checked);
 * - a successful `get` returned exactly the stored state;
 * - the state tag resolves (checked with plain `fetch`, every digest recomputed here) to a complete
 *   state whose content is the previous one or, for a `put`, the new one — the new one when the put
 *   succeeded;
 * - the next lock → put → unlock works (with a fresh client, without faults).
 *
 * The suite prints the number of runs, faults injected and data lost (must be 0).
 */
import { afterAll, beforeAll, beforeEach, describe, expect, inject, it } from "@effect/vitest"
import { Cause, Chunk, Effect, Exit, Layer, Option } from "effect"
import * as Credentials from "../../src/Credentials.js"
import { isOrasStateError } from "../../src/Errors.js"
import * as HttpRegistry from "../../src/HttpRegistry.js"
import * as LockInfo from "../../src/LockInfo.js"
import * as RateLimiter from "../../src/RateLimiter.js"
import * as StateBackend from "../../src/StateBackend.js"
import { type Fault, type FaultProxy, type Rule, startFaultProxy } from "../support/faultProxy.js"
import { readStoredState, sha256Hex } from "../support/stateCheck.js"

const registries = inject("registries")
const target = registries.plain
const run = `f${Date.now().toString(36)}`
const workspace = "default"
const stateSize = 192 * 1024
/** Over HttpRegistry's 8 MiB read-whole threshold: such layers are streamed (and verified) instead. */
const bigStateSize = 9 * 1024 * 1024

type Op = "get" | "put" | "lock" | "unlock"
const ops: ReadonlyArray<Op> = ["get", "put", "lock", "unlock"]

// Errors a fault may legitimately surface as. Anything else (LockConflict with nobody else
// around, LockLost, a defect) is a finding.
const allowedFailures = new Set(["TransientRegistry", "RegistryError", "CorruptState", "InconsistentRead"])

const registryOptions = {
  retry: { maxRetries: 2, waitMin: "10 millis", waitMax: "40 millis", jitter: false },
  requestTimeout: "400 millis",
  idleTimeout: "400 millis"
} as const

/** Through the proxy: short timeouts and fast retries. Direct (`proxied: false`): generous ones. */
const backend = (host: string, repository: string, proxied = true, compression: "none" | "gzip" = "none") =>
  StateBackend.layer({ repository, compression }).pipe(
    Layer.provide(
      HttpRegistry.layerNode(proxied ? { registry: host, ...registryOptions } : { registry: host, retry: registryOptions.retry }).pipe(
        Layer.provide(Credentials.layerNone),
        Layer.provide(RateLimiter.layerUnlimited)
      )
    )
  )

const stateManager = Effect.flatMap(StateBackend.StateBackend, (b) => b.stateManager(workspace))

/** A Terraform-like state with its serial, padded to `size` with bytes that depend on it. */
const stateBytes = (serial: number, size = stateSize): Uint8Array => {
  let x = (serial * 2654435761) >>> 0 || 1
  const pad = Buffer.alloc(size)
  for (let i = 0; i < pad.length; i++) {
    x ^= x << 13
    x ^= x >>> 17
    x ^= x << 5
    pad[i] = 97 + ((x >>> 0) % 26)
  }
  return new TextEncoder().encode(JSON.stringify({ version: 4, serial, lineage: run, pad: pad.toString("latin1") }))
}

const serialOf = (data: Uint8Array): number => (JSON.parse(new TextDecoder().decode(data)) as { serial: number }).serial

// ---------------------------------------------------------------------------------------------
// Bookkeeping
// ---------------------------------------------------------------------------------------------

const totals = {
  runs: 0,
  faults: 0,
  succeeded: 0,
  failed: 0,
  dataLost: 0,
  violations: 0,
  byTag: new Map<string, number>(),
  byFault: new Map<string, number>()
}
/** Findings of the running test (reset before each). */
let violations: Array<string> = []
const proxies: Array<FaultProxy> = []

afterAll(async () => {
  await Promise.allSettled(proxies.map((p) => p.close()))
  const tags = [...totals.byTag].map(([tag, n]) => `${tag} ${n}`).join(", ")
  const faults = [...totals.byFault].map(([name, n]) => `${name} ${n}`).join(", ")
  console.log(
    `fault injection: ${totals.runs} runs (trials), ${totals.faults} faults injected (${faults}), ` +
      `${totals.succeeded} operations succeeded, ${totals.failed} failed with tagged errors (${tags}), ` +
      `data lost = ${totals.dataLost}, violations = ${totals.violations}`
  )
})

/** Why `exit` is not acceptable (a defect, an interruption, an untagged or unexpected error), if it is not. */
const judgeExit = (exit: Exit.Exit<unknown, unknown>): string | undefined => {
  if (Exit.isSuccess(exit)) return undefined
  const cause = exit.cause
  if (Cause.isDie(cause)) return `defect: ${Cause.pretty(cause)}`
  // Interruptions next to a failure are fine (a failed step interrupts the requests running
  // beside it); an operation that was only interrupted is not.
  const failures = Chunk.toArray(Cause.failures(cause))
  if (failures.length === 0) return `no failure (interrupted?): ${Cause.pretty(cause)}`
  for (const error of failures) {
    if (!isOrasStateError(error)) return `untagged failure: ${String(error)}`
    if (!allowedFailures.has(error._tag)) return `unexpected ${error._tag}: ${error.message}`
  }
  return undefined
}

// ---------------------------------------------------------------------------------------------
// One lane: an operation, a repository and a proxy of its own
// ---------------------------------------------------------------------------------------------

interface Lane {
  readonly op: Op
  readonly size: number
  readonly compression: "none" | "gzip"
  readonly repository: string
  readonly proxy: FaultProxy
  serial: number
}

const lanes = new Map<string, Lane>()

const laneFor = (fault: string, op: Op, compression: "none" | "gzip", size: number) =>
  Effect.gen(function*() {
    const key = `${fault}/${op}`
    const existing = lanes.get(key)
    if (existing !== undefined) return existing
    const proxy = yield* Effect.promise(() => startFaultProxy(target.url))
    proxies.push(proxy)
    const lane: Lane = { op, size, compression, repository: `${run}/${fault.toLowerCase()}-${op}`, proxy, serial: 1 }
    // The baseline state, written without faults.
    yield* Effect.flatMap(stateManager, (sm) => sm.put(stateBytes(1, size))).pipe(
      Effect.provide(backend(target.host, lane.repository, false, compression))
    )
    lanes.set(key, lane)
    return lane
  })

interface RunResult {
  readonly fired: boolean
  /** The requests the fault hit (`METHOD /path`). */
  readonly hit: ReadonlyArray<string>
  readonly exit: Exit.Exit<unknown, unknown>
  readonly millis: number
}

/** The operation under test, through the proxy with `rule` armed; locks it took are released after. */
const runOp = (lane: Lane, rule: Rule, next: Uint8Array): Effect.Effect<RunResult, unknown> =>
  Effect.gen(function*() {
    const sm = yield* stateManager
    const info = LockInfo.make({ ID: `${lane.op}-${lane.serial}`, Who: "faults@test", Operation: "OperationTypeApply" })
    const held = lane.op === "put" || lane.op === "unlock" ? yield* sm.lock(info) : undefined
    const operation: Effect.Effect<unknown, unknown> = lane.op === "get"
      ? sm.get
      : lane.op === "put"
      ? sm.put(next, { lockId: held })
      : lane.op === "lock"
      ? sm.lock(info)
      : sm.unlock(held!)
    lane.proxy.setRules([rule])
    const seenBefore = lane.proxy.requests.length
    const started = performance.now()
    const exit = yield* Effect.exit(operation)
    const millis = performance.now() - started
    const fired = lane.proxy.allFired()
    const hit = lane.proxy.requests.slice(seenBefore).filter((r) => r.fault !== undefined).map((r) => `${r.method} ${r.path}`)
    lane.proxy.clear()
    // Release what is held; a failed unlock must work when tried again.
    if (lane.op === "lock" && Exit.isSuccess(exit)) yield* sm.unlock(exit.value as string)
    if (lane.op === "put") yield* sm.unlock(held!)
    if (lane.op === "unlock" && Exit.isFailure(exit)) yield* sm.unlock(held!)
    if (lane.op === "get" && Exit.isSuccess(exit)) {
      const payload = exit.value as Option.Option<StateBackend.StatePayload>
      if (Option.isNone(payload)) violations.push(`${lane.repository}: get returned no state`)
      else if (serialOf(payload.value.data) !== lane.serial || sha256Hex(payload.value.data) !== sha256Hex(stateBytes(lane.serial, lane.size))) {
        violations.push(`${lane.repository}: get returned other bytes than the stored state`)
      }
    }
    return { fired, hit, exit, millis }
  }).pipe(Effect.provide(backend(lane.proxy.host, lane.repository, true, lane.compression)))

/** Checks after a run, then the next lock → put → unlock without faults (a fresh client). */
const afterRun = (lane: Lane, label: string, result: RunResult) =>
  Effect.gen(function*() {
    totals.runs++
    const verdict = judgeExit(result.exit)
    if (verdict !== undefined) violations.push(`${label}: ${verdict}`)
    // Never a hang: the client's timeouts (400 ms) and retries bound every operation.
    if (result.millis > 10_000) violations.push(`${label}: took ${result.millis.toFixed(0)} ms`)
    if (Exit.isSuccess(result.exit)) totals.succeeded++
    else {
      totals.failed++
      for (const error of Chunk.toArray(Cause.failures(result.exit.cause))) {
        const tag = isOrasStateError(error) ? error._tag : "untagged"
        totals.byTag.set(tag, (totals.byTag.get(tag) ?? 0) + 1)
      }
    }
    // The state tag: complete and digest-valid, old or (for a put) new content.
    const stored = yield* Effect.promise(() => readStoredState(target.url, lane.repository, `state-${workspace}`).then(
      (s) => ({ ok: true as const, s }),
      (e: unknown) => ({ ok: false as const, e: String(e) })
    ))
    const allowed = lane.op === "put"
      ? Exit.isSuccess(result.exit) ? [lane.serial + 1] : [lane.serial, lane.serial + 1]
      : [lane.serial]
    let current: number | undefined
    if (!stored.ok || stored.s === undefined) {
      totals.dataLost++
      violations.push(`${label}: the state tag is ${stored.ok ? "gone" : `broken (${stored.e})`}`)
    } else {
      current = serialOf(stored.s.data)
      if (!allowed.includes(current) || sha256Hex(stored.s.data) !== sha256Hex(stateBytes(current, lane.size))) {
        totals.dataLost++
        violations.push(`${label}: the state holds serial ${current}, expected one of ${allowed.join(", ")}`)
      }
    }
    lane.serial = current ?? lane.serial
    // The next lock → put → unlock works.
    const following = lane.serial + 1
    const next = yield* Effect.exit(
      Effect.gen(function*() {
        const sm = yield* stateManager
        const lockId = yield* sm.lock(LockInfo.make({ ID: `next-${following}`, Who: "faults@test" }))
        yield* sm.put(stateBytes(following, lane.size), { lockId })
        yield* sm.unlock(lockId)
        const got = yield* sm.get
        return Option.map(got, (p) => serialOf(p.data))
      }).pipe(Effect.provide(backend(target.host, lane.repository, false, lane.compression)))
    )
    if (Exit.isFailure(next) || !Option.contains(next.value, following)) {
      violations.push(`${label}: the next lock/put/unlock failed: ${Exit.isFailure(next) ? Cause.pretty(next.cause) : "state not updated"}`)
    } else {
      lane.serial = following
    }
  })

interface FaultCase {
  readonly name: string
  readonly fault: Fault
  readonly method?: ReadonlyArray<string>
  readonly times?: number
  /** Positions tried at most (every request of the operation when absent). */
  readonly maxPositions?: number
  /** State layers gzip-compressed (the streaming gunzip path) instead of raw. */
  readonly compression?: "gzip"
  /** State size (default 192 KiB). */
  readonly size?: number
  /** Operations swept (default all four). */
  readonly ops?: ReadonlyArray<Op>
}

/** Inject `fault` at request 0, 1, 2, … of `op` until the operation has no such request. */
const sweep = (faultCase: FaultCase, op: Op) =>
  Effect.gen(function*() {
    const lane = yield* laneFor(faultCase.name, op, faultCase.compression ?? "none", faultCase.size ?? stateSize)
    const results: Array<RunResult> = []
    for (let position = 0; position < (faultCase.maxPositions ?? 16); position++) {
      const before = lane.proxy.injected
      const rule: Rule = {
        ...(faultCase.method === undefined ? {} : { method: faultCase.method }),
        skip: position,
        times: faultCase.times ?? 1,
        fault: faultCase.fault
      }
      const result = yield* runOp(lane, rule, stateBytes(lane.serial + 1, lane.size))
      totals.faults += lane.proxy.injected - before
      totals.byFault.set(faultCase.name, (totals.byFault.get(faultCase.name) ?? 0) + lane.proxy.injected - before)
      if (!result.fired) {
        // Past the last request: nothing was injected, but the run still has to be clean.
        const verdict = judgeExit(result.exit)
        if (verdict !== undefined) violations.push(`${faultCase.name}/${op} without a fault: ${verdict}`)
        break
      }
      results.push(result)
      yield* afterRun(lane, `${faultCase.name} at request ${position} of ${op}`, result)
    }
    return results
  })

const sweepAll = (faultCase: FaultCase) =>
  Effect.forEach(faultCase.ops ?? ops, (op) => Effect.map(sweep(faultCase, op), (results) => [op, results] as const), {
    concurrency: "unbounded"
  }).pipe(Effect.map((entries) => new Map(entries)))

const expectClean = () => {
  totals.violations += violations.length
  expect(violations).toEqual([])
  expect(totals.dataLost).toBe(0)
}

// ---------------------------------------------------------------------------------------------
// The faults
// ---------------------------------------------------------------------------------------------

describe("fault injection between HttpRegistry and a real registry", () => {
  beforeAll(() => {
    expect(target.url).toMatch(/^http:\/\/127\.0\.0\.1:/)
  })
  beforeEach(() => {
    violations = []
  })

  it.live("503 bursts within the retry budget: reads and idempotent writes succeed", () =>
    Effect.gen(function*() {
      const results = yield* sweepAll({ name: "503x2", fault: { _tag: "status", status: 503 }, times: 2 })
      expectClean()
      // Reads retry through a burst of two.
      expect(results.get("get")!.every((r) => Exit.isSuccess(r.exit))).toBe(true)
      for (const op of ops) expect(results.get(op)!.length).toBeGreaterThan(0)
    }))

  it.live("503 bursts beyond the retry budget: tagged failures, nothing lost", () =>
    Effect.gen(function*() {
      yield* sweepAll({ name: "503x6", fault: { _tag: "status", status: 503 }, times: 6 })
      expectClean()
    }))

  it.live("429 with Retry-After: honoured, then success (reads) or a tagged failure", () =>
    Effect.gen(function*() {
      const results = yield* sweepAll({
        name: "429",
        fault: { _tag: "status", status: 429, headers: { "retry-after": "1" } },
        maxPositions: 3
      })
      expectClean()
      // The retried read waited at least the second the registry asked for.
      for (const r of results.get("get")!) {
        expect(Exit.isSuccess(r.exit)).toBe(true)
        expect(r.millis).toBeGreaterThanOrEqual(950)
      }
    }))

  it.live("connection reset mid-upload (blob and manifest PUTs)", () =>
    Effect.gen(function*() {
      const results = yield* sweepAll({ name: "reset", fault: { _tag: "resetUpload" }, method: ["PUT"] })
      expectClean()
      expect(results.get("put")!.length).toBeGreaterThanOrEqual(2)
    }))

  it.live("truncated response bodies (manifests, blobs, tag lists)", () =>
    Effect.gen(function*() {
      const results = yield* sweepAll({ name: "truncate", fault: { _tag: "truncateBody" }, method: ["GET"] })
      const gzipped = yield* sweepAll({ name: "truncateGzip", fault: { _tag: "truncateBody" }, method: ["GET"], compression: "gzip" })
      // A 9 MiB raw layer is read whole into one buffer, hashed as it arrives: cut, the read is
      // retried (idempotent GET) and the get returns the whole stored state (checked in runOp).
      const big = yield* sweepAll({ name: "truncateBig", fault: { _tag: "truncateBody" }, method: ["GET"], size: bigStateSize, ops: ["get"] })
      expect(big.get("get")!.filter((r) => r.hit.some((h) => h.includes("/blobs/"))).map((r) => Exit.isSuccess(r.exit))).toEqual([true])
      expectClean()
      expect(results.get("get")!.length).toBe(2)
      // The manifest and the layer were each cut once, raw and gzip: a get either failed (tagged) or
      // returned exactly the stored state (checked in runOp) — never part of one.
      const gets = [...results.get("get")!, ...gzipped.get("get")!]
      expect(gets.filter((r) => r.hit.some((h) => h.includes("/blobs/")))).toHaveLength(2)
      expect(gets.filter((r) => r.hit.some((h) => h.includes("/manifests/")))).toHaveLength(2)
    }))

  it.live("stalled responses: no answer at all, or a body that stops (the client's timeouts fire)", () =>
    Effect.gen(function*() {
      yield* sweepAll({ name: "stallHead", fault: { _tag: "stall", phase: "head" } })
      yield* sweepAll({ name: "stallBody", fault: { _tag: "stall", phase: "body" }, method: ["GET"] })
      yield* sweepAll({ name: "stallBodyGzip", fault: { _tag: "stall", phase: "body" }, method: ["GET"], compression: "gzip" })
      yield* sweepAll({ name: "stallBodyBig", fault: { _tag: "stall", phase: "body" }, method: ["GET"], size: bigStateSize, ops: ["get"] })
      expectClean()
    }))

  it.live("requests that land but whose response is lost (manifest PUT, DELETE, …)", () =>
    Effect.gen(function*() {
      const results = yield* sweepAll({ name: "lost", fault: { _tag: "loseResponse" } })
      expectClean()
      // A tag PUT that landed without an answer is observed, not re-sent: the put and the lock succeed.
      const onTag = (op: Op, pattern: RegExp) => results.get(op)!.filter((r) => r.hit.some((h) => pattern.test(h)))
      expect(onTag("put", /^PUT .*\/manifests\/state-/).map((r) => Exit.isSuccess(r.exit))).toEqual([true])
      expect(onTag("lock", /^PUT .*\/manifests\/(lockc|locked)-/).every((r) => Exit.isSuccess(r.exit))).toBe(true)
      // A DELETE whose answer was lost is retried, finds nothing, and counts as done.
      expect(onTag("unlock", /^DELETE /).every((r) => Exit.isSuccess(r.exit))).toBe(true)
    }))
})
