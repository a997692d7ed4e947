/**
 * `npm run bench`: the performance targets of design §8, measured against a real registry.
 *
 * Starts CNCF distribution 2.8 (`docker-registry`, plain mode) on a free loopback port and a
 * counting proxy in front of it, then measures
 * 1. requests per operation on the happy path (through the proxy), beside ghoten's;
 * 2. latency of get/put of a 1 MiB state beside a minimal raw client (undici `request`, the same
 *    requests) and the same minimal client on `@effect/platform`'s `HttpClient` (the floor of any
 *    Effect client), interleaved;
 * 3. throughput and peak RSS of 64 MiB and 256 MiB states, raw and gzip, put and get, each in a
 *    fresh child process (ours and the raw client);
 * 4. lock acquisition rate, uncontended and with 4 contending processes.
 * Prints a markdown report and writes it to `bench/results.md`.
 *
 * Environment: BENCH_QUICK=1 for a short smoke run (fewer iterations, 64 MiB only);
 * BENCH_ONLY=counts,latency,gc,throughput,locks to run some sections (results.md is then not written).
 */
import { execFile } from "node:child_process"
import * as Crypto from "node:crypto"
import * as Fs from "node:fs/promises"
import * as Os from "node:os"
import { fileURLToPath } from "node:url"
import * as Effect from "effect/Effect"
import * as LockInfo from "../src/LockInfo.js"
import { startRegistry } from "../test/support/registryProcess.js"
import { type Client, makeClient } from "./client.js"
import { gcLoopPlatformTag, gcLoopRawTag, gcLoopWorkspace, makeState, MiB, setSerial } from "./data.js"
import { type Counts, startCountingProxy } from "./proxy.js"
import { makePlatformClient } from "./platform.js"
import { makeRawClient, type RawClient } from "./raw.js"
import { fixed, median, p95, table, timed } from "./stats.js"

const quick = process.env["BENCH_QUICK"] === "1"
const only = process.env["BENCH_ONLY"]?.split(",")
const section = (name: string) => only === undefined || only.includes(name)
const workerPath = fileURLToPath(new URL("./worker.js", import.meta.url))
const resultsPath = fileURLToPath(new URL("../../bench/results.md", import.meta.url))
const run = `b${Date.now().toString(36)}`

const log = (line: string) => process.stderr.write(`${line}\n`)

const child = <A>(args: ReadonlyArray<string>): Promise<A> =>
  new Promise((resolve, reject) => {
    execFile(process.execPath, ["--expose-gc", workerPath, ...args], { maxBuffer: 64 * MiB }, (error, stdout, stderr) => {
      if (error !== null) reject(new Error(`${args.join(" ")}: ${stderr || error.message}`))
      else resolve(JSON.parse(stdout.trim().split("\n").pop()!) as A)
    })
  })

const describeCounts = (counts: Counts): string =>
  Object.entries(counts).sort(([a], [b]) => a.localeCompare(b)).map(([k, v]) => `${v}× ${k}`).join(", ")

const sum = (counts: Counts) => Object.values(counts).reduce((a, b) => a + b, 0)

// ---------------------------------------------------------------------------------------------
// 1. Requests per operation
// ---------------------------------------------------------------------------------------------

const requestCounts = async (proxyHost: string, direct: string, proxy: Awaited<ReturnType<typeof startCountingProxy>>) => {
  const repository = `${run}/counts`
  const small = makeState(16 * 1024, 3)
  const rows: Array<{ op: string; ghoten: string; target: string; counts: Counts; background?: Counts; note?: string }> = []
  const count = async (f: () => Promise<unknown>): Promise<Counts> => {
    proxy.reset()
    await f()
    return proxy.snapshot()
  }

  // The first write to a new repository uploads the empty config blob (HEAD 404, POST, PUT).
  const first = await makeClient(proxyHost, { repository })
  const firstSm = await first.manager("first")
  const firstPut = await count(() => first.run(firstSm.put(small)))
  await first.dispose()
  // A fresh process: its first write checks the empty config blob once (HEAD).
  const cold = await makeClient(proxyHost, { repository })
  const coldSm = await cold.manager("cold")
  const coldPut = await count(() => cold.run(coldSm.put(small)))
  await cold.dispose()

  const client = await makeClient(proxyHost, { repository })
  const other = await makeClient(proxyHost, { repository })
  const sm = await client.manager("app")
  await client.run(sm.put(small)) // the process is warm (config checked), the state exists

  setSerial(small, 2)
  rows.push({ op: "get", ghoten: "3", target: "2", counts: await count(() => client.run(sm.get)) })
  rows.push({ op: "put, no lock", ghoten: "~7", target: "≤ 4", counts: await count(() => client.run(sm.put(small))) })

  // Terraform's apply: lock, read, write under the lock (fenced), unlock.
  const info = LockInfo.make({ ID: "", Who: "bench@host", Operation: "OperationTypeApply" })
  let lockId = ""
  const lockCounts = await count(async () => {
    lockId = await client.run(sm.lock(info))
  })
  rows.push({ op: "lock", ghoten: "~8", target: "≤ 4", counts: lockCounts })
  const getLocked = await count(() => client.run(sm.get))
  setSerial(small, 3)
  rows.push({
    op: "put under the lock (fence incl.)",
    ghoten: "~7",
    target: "≤ 4",
    counts: await count(() => client.run(sm.put(small, { lockId })))
  })
  const unlockCounts = await count(() => client.run(sm.unlock(lockId)))
  rows.push({ op: "unlock", ghoten: "4–5", target: "≤ 3", counts: unlockCounts })
  const cycle = sum(lockCounts) + sum(getLocked) + sum(rows.at(-2)!.counts) + sum(unlockCounts)

  // Unlock from another process (Terraform's UNLOCK reaching another server replica).
  const otherSm = await other.manager("app")
  const lockId2 = await client.run(sm.lock(LockInfo.make({ ID: "", Who: "bench@host" })))
  rows.push({
    op: "unlock by another process",
    ghoten: "4–5",
    target: "≤ 3",
    counts: await count(() => other.run(otherSm.unlock(lockId2)))
  })

  // Versioning: keep all; and with retention (max 3 versions), foreground and background apart.
  const versioned = await makeClient(proxyHost, { repository, versioning: { enabled: true } })
  const vsm = await versioned.manager("versioned")
  await versioned.run(vsm.put(small))
  setSerial(small, 4)
  rows.push({
    op: "put, versioning on",
    ghoten: "~10 + O(versions)",
    target: "≤ 5",
    counts: await count(() => versioned.run(vsm.put(small)))
  })
  await versioned.dispose()
  const retained = await makeClient(proxyHost, { repository, versioning: { enabled: true, maxVersions: 3 } })
  const rsm = await retained.manager("retained")
  for (let i = 0; i < 5; i++) {
    setSerial(small, 10 + i)
    await retained.run(rsm.put(small))
  }
  await retained.run(rsm.awaitRetention)
  setSerial(small, 20)
  const foreground = await count(() => retained.run(rsm.put(small)))
  const background = await count(() => retained.run(rsm.awaitRetention))
  rows.push({
    op: "put, versioning on, max_versions 3 (steady state)",
    ghoten: "~10 + O(versions)",
    target: "≤ 5 + O(pruned) in background",
    counts: foreground,
    background
  })
  await retained.dispose()

  // 100 workspaces (written directly, listed through the proxy).
  const wsRepository = `${run}/workspaces`
  const writer = await makeClient(direct, { repository: wsRepository })
  for (let i = 0; i < 100; i += 10) {
    await Promise.all(Array.from({ length: 10 }, async (_, j) => {
      // Distinct content per workspace: distribution 2.8 loses blob links when identical blobs
      // are committed concurrently (the manifest PUT then fails with MANIFEST_BLOB_UNKNOWN).
      const m = await writer.manager(`env-${String(i + j).padStart(3, "0")}`)
      await writer.run(m.put(makeState(4096, 1000 + i + j)))
    }))
  }
  await writer.dispose()
  const lister = await makeClient(proxyHost, { repository: wsRepository })
  let listed = 0
  const wsCounts = await count(async () => {
    listed = (await lister.run(lister.backend.workspaces)).length
  })
  rows.push({ op: `workspaces (100 + default → ${listed} listed)`, ghoten: "1 + 2 per hashed name", target: "—", counts: wsCounts })
  await lister.dispose()

  rows.push({ op: "first put of a process", ghoten: "~7", target: "≤ 4 (+1 once)", counts: coldPut, note: "the empty config blob is checked once per process" })
  rows.push({ op: "first put to a new repository", ghoten: "~8", target: "—", counts: firstPut, note: "uploads the empty config blob" })
  await client.dispose()
  await other.dispose()

  const body = table(
    ["operation", "ghoten", "target", "oras-state", "requests"],
    rows.map((r) => [
      r.op,
      r.ghoten,
      r.target,
      `**${sum(r.counts)}**${r.background === undefined ? "" : ` + ${sum(r.background)} background`}`,
      describeCounts(r.counts) + (r.background === undefined ? "" : `; background: ${describeCounts(r.background)}`) +
      (r.note === undefined ? "" : ` (${r.note})`)
    ])
  )
  return `${body}\n\nA whole \`terraform apply\` cycle (lock, get, put under the lock, unlock): **${cycle}** requests (ghoten ≈ 8 + 3 + 7 + 4 = 22).`
}

// ---------------------------------------------------------------------------------------------
// 2. Latency of 1 MiB get/put beside the raw client
// ---------------------------------------------------------------------------------------------

const latency = async (direct: string) => {
  const repository = `${run}/latency`
  const iterations = quick ? 15 : 200
  const warmup = quick ? 3 : 20
  const client = await makeClient(direct, { repository })
  const raw = makeRawClient(direct)
  const platform = await makePlatformClient(direct)
  const sm = await client.manager("lat")
  const state = makeState(MiB, 5)
  await client.run(sm.put(state))
  await raw.put(repository, "raw-lat", state, false)
  await platform.put(repository, "platform-lat", state)
  type Key = "oursGet" | "platformGet" | "rawGet" | "rawVerifyGet" | "oursPut" | "platformPut" | "rawPut"
  const samples: Record<Key, Array<number>> = {
    oursGet: [],
    platformGet: [],
    rawGet: [],
    rawVerifyGet: [],
    oursPut: [],
    platformPut: [],
    rawPut: []
  }
  let serial = 100
  const next = () => {
    setSerial(state, serial++)
    return state
  }
  const gets: Array<[Key, () => Promise<unknown>]> = [
    ["oursGet", () => client.run(sm.get)],
    ["platformGet", () => platform.get(repository, "platform-lat")],
    ["rawGet", () => raw.get(repository, "raw-lat")],
    ["rawVerifyGet", () => raw.get(repository, "raw-lat", true)]
  ]
  const puts: Array<[Key, () => Promise<unknown>]> = [
    ["oursPut", () => client.run(sm.put(next()))],
    ["platformPut", () => platform.put(repository, "platform-lat", next())],
    ["rawPut", () => raw.put(repository, "raw-lat", next(), false)]
  ]
  for (let i = 0; i < warmup + iterations; i++) {
    // Interleaved, rotating which goes first, so that drift hits all alike.
    for (const group of [gets, puts]) {
      const ordered = [...group.slice(i % group.length), ...group.slice(0, i % group.length)]
      for (const [key, f] of ordered) {
        const [ms] = await timed(f)
        if (i >= warmup) samples[key].push(ms)
      }
    }
  }
  await client.dispose()
  await raw.close()
  await platform.close()
  // `verified`: the raw client that also hashes the blob as it arrives (get only; a put hashes
  // in every client).
  const row = (
    op: string,
    requests: string,
    ours: Array<number>,
    platformSamples: Array<number>,
    rawSamples: Array<number>,
    verified: Array<number> | undefined
  ) => [
    op,
    requests,
    fixed(median(ours), 2),
    fixed(p95(ours), 2),
    fixed(median(platformSamples), 2),
    fixed(median(rawSamples), 2),
    fixed(p95(rawSamples), 2),
    verified === undefined ? "(hashes)" : fixed(median(verified), 2),
    `**${fixed(median(ours) / median(rawSamples), 2)}×**`,
    verified === undefined ? "—" : `${fixed(median(ours) / median(verified), 2)}×`,
    `${fixed(median(platformSamples) / median(rawSamples), 2)}×`,
    "≤ 1.3×"
  ]
  return {
    text: table(
      [
        "1 MiB state",
        "requests (ours / raw)",
        "ours median ms",
        "ours p95 ms",
        "platform client median ms",
        "raw median ms",
        "raw p95 ms",
        "raw + sha256 median ms",
        "ours / raw (medians)",
        "ours / raw + sha256",
        "platform / raw",
        "target"
      ],
      [
        row("get", "2 / 2", samples.oursGet, samples.platformGet, samples.rawGet, samples.rawVerifyGet),
        row("put (no lock)", "4 / 4", samples.oursPut, samples.platformPut, samples.rawPut, undefined)
      ]
    ) + `\n\n${iterations} interleaved iterations after ${warmup} warm-up rounds, one process, keep-alive connections. ` +
      "Raw: undici `request`, the same minimal requests, nothing checked; raw + sha256: the same, hashing the blob " +
      "as it arrives and checking its digest (the least a verifying client does). Platform client: the same requests on " +
      "`@effect/platform`'s `HttpClient` (undici, its span off), nothing checked — the floor of any Effect client. " +
      "A put is the same four requests in all three: the parent manifest read (sent first, answered while the state " +
      "is hashed), POST upload, PUT blob, PUT manifest. Ours verifies the manifest and the blob (sha256, size), " +
      "decodes the manifest strictly and records metrics; it makes spans only under an installed tracer (none here, " +
      "as in an application without one)."
  }
}

// ---------------------------------------------------------------------------------------------
// 2b. What each client costs V8's collector: back-to-back gets, one client per process
// ---------------------------------------------------------------------------------------------

interface GetLoopResult {
  readonly times: ReadonlyArray<number>
  readonly majors: number
  readonly pauseMs: number
}

const getLoops = async (direct: string) => {
  const repository = `${run}/getloop`
  const iterations = quick ? 100 : 500
  const client = await makeClient(direct, { repository })
  const raw = makeRawClient(direct)
  const platform = await makePlatformClient(direct)
  const state = makeState(MiB, 9)
  await client.run(Effect.flatMap(client.backend.stateManager(gcLoopWorkspace), (sm) => sm.put(state)))
  await raw.put(repository, gcLoopRawTag, state, false)
  await platform.put(repository, gcLoopPlatformTag, state)
  await client.dispose()
  await raw.close()
  await platform.close()
  const clients = [
    ["raw", "raw client"],
    ["rawv", "raw + sha256"],
    ["raw-in-effect", "raw + sha256, run as one Effect (`Effect.runPromise`)"],
    ["platform", "platform client"],
    ["ours", "oras-state"]
  ] as const
  const rows: Array<Array<string>> = []
  for (const [who, label] of clients) {
    const result = await child<GetLoopResult>(["getloop", direct, repository, who, String(iterations)])
    const mean = result.times.reduce((a, b) => a + b, 0) / result.times.length
    rows.push([
      label,
      fixed(median(result.times), 2),
      fixed(mean, 2),
      fixed(p95(result.times), 2),
      fixed((100 * result.majors) / iterations, 1),
      fixed(result.pauseMs / iterations, 2)
    ])
  }
  return table(
    ["client (alone in its process)", "median ms", "mean ms", "p95 ms", "mark-compacts per 100 gets", "main-thread GC pause ms per get"],
    rows
  ) + `\n\n${iterations} back-to-back gets of one 1 MiB state after 50 warm-up gets, each client in a fresh process ` +
    "(the same `--expose-gc` worker as the memory runs), V8's collections counted by a `PerformanceObserver`. " +
    "Pauses are the main thread's; concurrent marking also runs on a helper thread, on the 2 cores the registry uses."
}

// ---------------------------------------------------------------------------------------------
// 3. Throughput and peak RSS, in child processes
// ---------------------------------------------------------------------------------------------

interface TransferResult {
  readonly seconds: number
  readonly idle: number
  readonly before: number
  readonly peak: number
}

const throughput = async (direct: string) => {
  const repository = `${run}/throughput`
  // The raw client's manifests reference the empty config blob: let the library write it once.
  const setup = await makeClient(direct, { repository })
  await setup.run(Effect.flatMap(setup.backend.stateManager("setup"), (m) => m.put(makeState(1024, 1))))
  await setup.dispose()
  const sizes = quick ? [64] : [64, 256]
  const reps = quick ? 1 : 3
  const rows: Array<Array<string>> = []
  const idle: Record<"ours" | "raw", Array<number>> = { ours: [], raw: [] }
  for (const sizeMiB of sizes) {
    for (const compression of ["none", "gzip"] as const) {
      const bytes = sizeMiB * MiB
      const results: Record<string, Array<TransferResult>> = {}
      for (let rep = 0; rep < reps; rep++) {
        for (const op of ["put", "get"] as const) {
          const clients = op === "get" ? ["ours", "raw", "rawv"] as const : ["ours", "raw"] as const
          for (const who of rep % 2 === 0 ? clients : [...clients].reverse()) {
            const name = `${who === "ours" ? "" : "raw-"}tp-${sizeMiB}-${compression}`
            const result = await child<TransferResult>(["transfer", direct, repository, who, op, String(bytes), compression, name])
            ;(results[`${who}-${op}`] ??= []).push(result)
            idle[who === "ours" ? "ours" : "raw"].push(result.idle)
            log(`  ${sizeMiB} MiB ${compression} ${who} ${op}: ${fixed(result.seconds, 3)} s, peak ${fixed(result.peak / MiB, 0)} MiB`)
          }
        }
      }
      for (const op of ["put", "get"] as const) {
        const ours = results[`ours-${op}`]!
        const raw = results[`raw-${op}`]!
        const oursRate = sizeMiB / median(ours.map((r) => r.seconds))
        const rawRate = sizeMiB / median(raw.map((r) => r.seconds))
        const verified = results[`rawv-${op}`]
        const verifiedRate = verified === undefined ? undefined : sizeMiB / median(verified.map((r) => r.seconds))
        const oursPeak = median(ours.map((r) => r.peak))
        const rawPeak = median(raw.map((r) => r.peak))
        const oursIdle = median(ours.map((r) => r.idle))
        rows.push([
          `${sizeMiB} MiB`,
          compression,
          op,
          fixed(oursRate, 0),
          fixed(rawRate, 0),
          `**${fixed((oursRate / rawRate) * 100, 0)}%**`,
          verifiedRate === undefined ? "—" : fixed(verifiedRate, 0),
          verifiedRate === undefined ? "—" : `${fixed((oursRate / verifiedRate) * 100, 0)}%`,
          fixed(oursPeak / MiB, 0),
          `**${fixed(oursPeak / bytes, 2)}×**`,
          `${fixed((oursPeak - oursIdle) / bytes, 2)}×`,
          fixed(rawPeak / MiB, 0),
          `${fixed(rawPeak / bytes, 2)}×`,
          `${fixed((rawPeak - median(raw.map((r) => r.idle))) / bytes, 2)}×`
        ])
      }
    }
  }
  return table(
    [
      "state",
      "layer",
      "op",
      "ours MiB/s",
      "raw MiB/s",
      "ours / raw (target ≥ 80%)",
      "raw + sha256 MiB/s",
      "ours / raw + sha256",
      "ours peak RSS MiB",
      "ours peak / state (target ≤ 1.5×)",
      "ours (peak − idle process) / state",
      "raw peak RSS MiB",
      "raw peak / state",
      "raw (peak − idle process) / state"
    ],
    rows
  ) +
    `\n\nMiB/s of state (uncompressed) bytes; medians of ${reps} runs, each in a fresh process. Peak RSS: the process's ` +
    "VmHWM during the operation (garbage collected and watermark reset just before it), the state buffer included " +
    "(a put's input, a get's result). \"Idle process\": RSS with the client built, before any state exists: " +
    `ours ${fixed(median(idle.ours) / MiB, 0)} MiB (Node plus effect, @effect/platform, undici and the library), ` +
    `raw ${fixed(median(idle.raw) / MiB, 0)} MiB (Node and undici). Raw gzip = one-shot \`zlib.gzipSync\` / ` +
    "`gunzipSync` (level 1) around the same requests; raw get reads into one buffer of the declared size, unverified; " +
    "raw + sha256 also hashes the blob as it arrives and checks its digest (get)."
}

// ---------------------------------------------------------------------------------------------
// 4. Locks
// ---------------------------------------------------------------------------------------------

const rawLockCycle = async (raw: RawClient, repository: string, manifestFor: (tag: string) => Buffer) => {
  const manifestType = "application/vnd.oci.image.manifest.v1+json"
  const candidate = `lockc-raw-${Crypto.randomBytes(8).toString("hex")}`
  const bytes = manifestFor(candidate)
  const published = manifestFor(`${candidate}-published`)
  const digest = (b: Buffer) => `sha256:${Crypto.createHash("sha256").update(b).digest("hex")}`
  const [lockMs] = await timed(async () => {
    await Promise.all([
      raw.request("PUT", `/v2/${repository}/manifests/${candidate}`, bytes, manifestType),
      raw.request("GET", `/v2/${repository}/manifests/locked-raw`)
    ])
    await raw.request("GET", `/v2/${repository}/tags/list?n=1000`)
    await raw.request("PUT", `/v2/${repository}/manifests/locked-raw`, published, manifestType)
  })
  const [unlockMs] = await timed(async () => {
    await raw.request("DELETE", `/v2/${repository}/manifests/${digest(published)}`)
    await raw.request("DELETE", `/v2/${repository}/manifests/${digest(bytes)}`)
  })
  return { lockMs, unlockMs }
}

interface ContendResult {
  readonly acquired: number
  readonly conflicts: number
  readonly lockMs: ReadonlyArray<number>
  readonly waitMs: ReadonlyArray<number>
}

const locks = async (direct: string) => {
  const repository = `${run}/locks`
  const iterations = quick ? 10 : 40
  const client: Client = await makeClient(direct, { repository })
  const sm = await client.manager("solo")
  await client.run(sm.put(makeState(1024, 2)))
  const raw = makeRawClient(direct)
  const lockTimes: Array<number> = []
  const unlockTimes: Array<number> = []
  const rawLock: Array<number> = []
  const rawUnlock: Array<number> = []
  const manifestFor = (tag: string) =>
    Buffer.from(JSON.stringify({
      schemaVersion: 2,
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      artifactType: "application/vnd.terraform.lock.v1",
      config: { mediaType: "application/vnd.oci.empty.v1+json", digest: "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a", size: 2, data: "e30=" },
      layers: [{ mediaType: "application/vnd.oci.empty.v1+json", digest: "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a", size: 2, data: "e30=" }],
      annotations: { "org.terraform.lock.id": tag }
    }))
  for (let i = 0; i < iterations + 3; i++) {
    const info = LockInfo.make({ ID: `solo-${i}`, Who: "bench@host" })
    const [lockMs] = await timed(() => client.run(sm.lock(info)))
    const [unlockMs] = await timed(() => client.run(sm.unlock(info.ID)))
    const r = await rawLockCycle(raw, repository, manifestFor)
    if (i >= 3) {
      lockTimes.push(lockMs)
      unlockTimes.push(unlockMs)
      rawLock.push(r.lockMs)
      rawUnlock.push(r.unlockMs)
    }
  }
  await client.dispose()
  await raw.close()

  const seconds = quick ? 5 : 20
  const contend = async (n: number, repo: string) => {
    const results = await Promise.all(
      Array.from({ length: n }, (_, i) => child<ContendResult>(["contend", direct, repo, `p${i}`, String(seconds * 1000)]))
    )
    const acquired = results.reduce((a, r) => a + r.acquired, 0)
    return {
      rate: acquired / seconds,
      acquired,
      conflicts: results.reduce((a, r) => a + r.conflicts, 0),
      lockMs: median(results.flatMap((r) => r.lockMs)),
      waitP50: median(results.flatMap((r) => r.waitMs)),
      waitP95: p95(results.flatMap((r) => r.waitMs))
    }
  }
  const one = await contend(1, `${run}/contend-1`)
  const four = await contend(4, `${run}/contend-4`)
  const cycle = median(lockTimes) + median(unlockTimes)
  return table(
    ["lock (uncontended, one process)", "oras-state median ms", "p95 ms", "raw client, same requests, median ms", "ours / raw"],
    [
      ["lock (4 requests, 3 round trips)", fixed(median(lockTimes), 2), fixed(p95(lockTimes), 2), fixed(median(rawLock), 2), fixed(median(lockTimes) / median(rawLock), 2)],
      ["unlock (2 requests)", fixed(median(unlockTimes), 2), fixed(p95(unlockTimes), 2), fixed(median(rawUnlock), 2), fixed(median(unlockTimes) / median(rawUnlock), 2)],
      ["lock + unlock", fixed(cycle, 2), "", fixed(median(rawLock) + median(rawUnlock), 2), fixed(cycle / (median(rawLock) + median(rawUnlock)), 2)]
    ]
  ) + "\n\n" + table(
    ["contenders (processes)", "acquisitions/s (total)", "conflicts seen", "median lock() ms (successful)", "wait to acquire p50 ms", "p95 ms"],
    [
      ["1", fixed(one.rate, 1), String(one.conflicts), fixed(one.lockMs, 1), fixed(one.waitP50, 1), fixed(one.waitP95, 1)],
      ["4", fixed(four.rate, 1), String(four.conflicts), fixed(four.lockMs, 1), fixed(four.waitP50, 1), fixed(four.waitP95, 1)]
    ]
  ) + `\n\nEach contender loops lock → unlock for ${seconds} s; on \`LockConflict\` it sleeps 5–60 ms (as Terraform's \`-lock-timeout\` retries) and tries again.`
}

// ---------------------------------------------------------------------------------------------

const main = async () => {
  log(`oras-state bench ${run}${quick ? " (quick)" : ""}: starting distribution 2.8 on loopback…`)
  const registry = await startRegistry({ mode: "plain" })
  const proxy = await startCountingProxy(registry.url)
  try {
    log(`registry ${registry.host}, counting proxy ${proxy.host}`)
    const skipped = "(not run)"
    log("1/4 request counts…")
    const counts = section("counts") ? await requestCounts(proxy.host, registry.host, proxy) : skipped
    log("2/4 latency of 1 MiB get/put…")
    const lat = section("latency") ? (await latency(registry.host)).text : skipped
    log("2b/4 get loops, one client per process…")
    const loops = section("gc") ? await getLoops(registry.host) : skipped
    log("3/4 throughput and peak RSS (child processes)…")
    const tp = section("throughput") ? await throughput(registry.host) : skipped
    log("4/4 locks…")
    const lk = section("locks") ? await locks(registry.host) : skipped
    const cpu = Os.cpus()[0]?.model ?? "unknown CPU"
    const report = [
      "# oras-state benchmark",
      "",
      `${new Date().toISOString()} · Node ${process.version} · ${Os.cpus().length} × ${cpu} · ` +
      `distribution 2.8 (\`docker-registry\`, plain, filesystem storage) on 127.0.0.1${quick ? " · QUICK run" : ""}`,
      "",
      "## Requests per operation (happy path, warm process, counted by a proxy)",
      "",
      counts,
      "",
      "## Latency, 1 MiB state (same registry, minimal raw client as the practical limit)",
      "",
      lat,
      "",
      "### Back-to-back gets, one client per process: the garbage collector's share",
      "",
      loops,
      "",
      "## Throughput and peak memory (large states)",
      "",
      tp,
      "",
      "## Locks",
      "",
      lk,
      ""
    ].join("\n")
    process.stdout.write(`${report}\n`)
    if (only === undefined) {
      await Fs.writeFile(resultsPath, report)
      log(`written to ${resultsPath}`)
    }
  } finally {
    await proxy.stop()
    await registry.stop()
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`bench failed: ${error instanceof Error ? error.stack : String(error)}\n`)
  process.exit(1)
})
