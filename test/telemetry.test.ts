/**
 * OpenTelemetry: the spans and metrics of a put/get/lock/unlock/versions sequence, exported through
 * `@effect/opentelemetry`'s `NodeSdk.layer` into in-memory exporters, on the MemoryRegistry and on
 * real registries (plain, and token auth with a retried transient failure); and a scan of every
 * exported span name, attribute, event, status, resource attribute and metric label for
 * credentials, bearer tokens, query strings and state content.
 *
 * Spans are read before the SDK layer closes (its shutdown clears the span exporter). Effect
 * metrics are process-global and cumulative, so metric assertions compare against a baseline.
 */
import { NodeSdk } from "@effect/opentelemetry"
import * as HttpClient from "@effect/platform/HttpClient"
import type * as HttpClientError from "@effect/platform/HttpClientError"
import * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import * as UrlParams from "@effect/platform/UrlParams"
import { describe, expect, inject, it } from "@effect/vitest"
import {
  AggregationTemporality,
  DataPointType,
  InMemoryMetricExporter,
  PeriodicExportingMetricReader,
  type ResourceMetrics
} from "@opentelemetry/sdk-metrics"
import { InMemorySpanExporter, type ReadableSpan, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base"
import { Effect, Layer, Option, Redacted } from "effect"
import * as Fs from "node:fs/promises"
import * as Os from "node:os"
import * as Path from "node:path"
import * as Credentials from "../src/Credentials.js"
import * as HttpRegistry from "../src/HttpRegistry.js"
import * as LockInfo from "../src/LockInfo.js"
import * as MemoryRegistry from "../src/MemoryRegistry.js"
import * as OciLayoutRegistry from "../src/OciLayoutRegistry.js"
import * as RateLimiter from "../src/RateLimiter.js"
import { Registry } from "../src/Registry.js"
import * as StateBackend from "../src/StateBackend.js"

const registries = inject("registries")
const run = `t${Date.now().toString(36)}${Math.floor(Math.random() * 1e6).toString(36)}`

// -- in-memory OpenTelemetry --------------------------------------------------------------------------

const makeTelemetry = () => {
  const spans = new InMemorySpanExporter()
  const metrics = new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE)
  const reader = new PeriodicExportingMetricReader({ exporter: metrics, exportIntervalMillis: 3_600_000 })
  const layer = NodeSdk.layer(() => ({
    resource: { serviceName: "oras-state-test" },
    spanProcessor: new SimpleSpanProcessor(spans),
    metricReader: reader
  }))
  // Export what the metrics are now; returns the latest export.
  const collect = Effect.promise(async () => {
    await reader.forceFlush()
    const all = metrics.getMetrics()
    return all[all.length - 1]
  })
  return { spans, collect, layer }
}

interface Point {
  readonly name: string
  readonly attributes: Readonly<Record<string, unknown>>
  /** Counter value, or histogram count. */
  readonly value: number
}

const pointsOf = (exported: ResourceMetrics | undefined): Array<Point> =>
  (exported?.scopeMetrics ?? []).flatMap((scope) =>
    scope.metrics.flatMap((metric) =>
      (metric.dataPoints as ReadonlyArray<{ attributes: Record<string, unknown>; value: unknown }>).map((p) => ({
        name: metric.descriptor.name,
        attributes: p.attributes,
        value: metric.dataPointType === DataPointType.HISTOGRAM
          ? (p.value as { count: number }).count
          : Number(p.value)
      }))
    )
  )

const keyOf = (p: Pick<Point, "name" | "attributes">) =>
  `${p.name}${JSON.stringify(Object.entries(p.attributes).sort(([a], [b]) => a.localeCompare(b)))}`

/** How much each data point grew between two exports. */
const delta = (before: ResourceMetrics | undefined, after: ResourceMetrics | undefined) => {
  const base = new Map(pointsOf(before).map((p) => [keyOf(p), p.value]))
  return pointsOf(after).map((p) => ({ ...p, value: p.value - (base.get(keyOf(p)) ?? 0) })).filter((p) => p.value > 0)
}

/** Sum of the growth of `name` over the points whose attributes include `match`. */
const grown = (points: ReadonlyArray<Point>, name: string, match: Record<string, string> = {}) =>
  points
    .filter((p) => p.name === name && Object.entries(match).every(([k, v]) => p.attributes[k] === v))
    .reduce((n, p) => n + p.value, 0)

// -- span helpers ---------------------------------------------------------------------------------------

const byName = (spans: ReadonlyArray<ReadableSpan>, name: string) => spans.filter((s) => s.name === name)
const one = (spans: ReadonlyArray<ReadableSpan>, name: string) => {
  const found = byName(spans, name)
  expect(found.length, `span ${name}`).toBeGreaterThan(0)
  return found[0]!
}

const ancestors = (spans: ReadonlyArray<ReadableSpan>, span: ReadableSpan): Array<ReadableSpan> => {
  const byId = new Map(spans.map((s) => [s.spanContext().spanId, s]))
  const out: Array<ReadableSpan> = []
  let parentId = span.parentSpanContext?.spanId
  while (parentId !== undefined) {
    const parent = byId.get(parentId)
    if (parent === undefined) break
    out.push(parent)
    parentId = parent.parentSpanContext?.spanId
  }
  return out
}

/** Everything the exporters received, as one string to search. */
const exportedText = (spans: ReadonlyArray<ReadableSpan>, metrics: ResourceMetrics | undefined) =>
  JSON.stringify({
    spans: spans.map((s) => ({
      name: s.name,
      attributes: s.attributes,
      status: s.status,
      events: s.events.map((e) => ({ name: e.name, attributes: e.attributes })),
      links: s.links.map((l) => l.attributes),
      resource: s.resource.attributes
    })),
    metrics: pointsOf(metrics).map((p) => ({ name: p.name, attributes: p.attributes })),
    descriptors: (metrics?.scopeMetrics ?? []).flatMap((s) => s.metrics.map((m) => m.descriptor))
  })

// -- the sequence ---------------------------------------------------------------------------------------

const info = (ID: string) => LockInfo.make({ ID, Who: `${ID}@host`, Operation: "OperationTypeApply", Version: "1.9.0" })

const secretMarker = `state-secret-${run}`
const stateBytes = (serial: number) =>
  new TextEncoder().encode(JSON.stringify({
    version: 4,
    terraform_version: "1.9.0",
    serial,
    lineage: "3f0c1b7e-0000-4000-8000-000000000000",
    outputs: { db_password: { value: secretMarker, type: "string", sensitive: true } },
    resources: []
  }))

/** put, get, lock (and a conflicting lock), put under the lock, unlock, versions. */
const sequence = Effect.gen(function*() {
  const sm = yield* (yield* StateBackend.StateBackend).stateManager("default")
  yield* sm.put(stateBytes(1))
  const read = yield* sm.get
  expect(Option.map(read, (p) => p.data.byteLength)).toEqual(Option.some(stateBytes(1).byteLength))
  const id = yield* sm.lock(info("alice"))
  expect((yield* Effect.flip(sm.lock(info("bob"))))._tag).toBe("LockConflict")
  yield* sm.put(stateBytes(2), { lockId: id })
  yield* sm.unlock(id)
  const versions = yield* sm.versions
  expect(versions.map((v) => v.version)).toEqual([1, 2])
})

const stateOps = ["put", "get", "lock", "unlock", "versions"] as const

/** The checks every registry shares: span names, attributes, nesting, metrics. */
const checkTelemetry = (
  spans: ReadonlyArray<ReadableSpan>,
  grownPoints: ReadonlyArray<Point>,
  expected: { readonly registry: string; readonly repository: string; readonly http: boolean }
) => {
  // State operation spans.
  for (const op of stateOps) {
    const span = one(spans, `StateManager.${op}`)
    expect(span.attributes).toMatchObject({
      operation: op,
      workspace: "default",
      "oci.repository": expected.repository,
      "oci.registry": expected.registry
    })
  }
  const puts = byName(spans, "StateManager.put")
  expect(puts.map((s) => s.attributes["bytes"]).sort()).toEqual(
    [stateBytes(1).byteLength, stateBytes(2).byteLength].sort()
  )
  expect(one(spans, "StateManager.get").attributes["bytes"]).toBe(stateBytes(1).byteLength)
  expect(byName(spans, "StateManager.lock").length).toBe(2)

  // Registry spans: same names and attributes on every Registry layer, under a state operation.
  // (Token fetches are shared through the token cache: `Registry.fetchToken` is its own trace.)
  // (Calls the test makes on the Registry directly, on another repository, are left out.)
  const registrySpans = spans.filter((s) =>
    s.name.startsWith("Registry.") && s.name !== "Registry.fetchToken" &&
    s.attributes["oci.repository"] === expected.repository
  )
  expect(spans.filter((s) => s.name.startsWith("Registry.")).every((s) => s.attributes["oci.registry"] === expected.registry))
    .toBe(true)
  expect(new Set(registrySpans.map((s) => s.name))).toEqual(
    new Set([
      "Registry.resolveManifest",
      "Registry.getManifest",
      "Registry.putManifest",
      "Registry.deleteManifest",
      "Registry.blobExists",
      "Registry.getBlob",
      "Registry.putBlob",
      "Registry.startBlobUpload",
      "Registry.listTags"
    ])
  )
  for (const span of registrySpans) {
    expect(span.attributes).toMatchObject({
      operation: span.name.slice("Registry.".length),
      "oci.registry": expected.registry,
      "oci.repository": expected.repository
    })
    expect(ancestors(spans, span).some((a) => a.name.startsWith("StateManager.")), `${span.name} under a state op`).toBe(
      true
    )
  }
  const stateBlobPuts = byName(spans, "Registry.putBlob").filter((s) =>
    ancestors(spans, s).some((a) => a.name === "StateManager.put")
  )
  expect(stateBlobPuts.map((s) => s.attributes["bytes"])).toEqual(
    expect.arrayContaining([stateBytes(1).byteLength, stateBytes(2).byteLength])
  )
  for (const s of stateBlobPuts) expect(String(s.attributes["oci.reference"])).toMatch(/^sha256:[0-9a-f]{64}$/)
  const getBlob = one(spans, "Registry.getBlob")
  expect(getBlob.attributes["bytes"]).toBe(stateBytes(1).byteLength)
  expect(ancestors(spans, getBlob).map((a) => a.name)).toContain("StateManager.get")
  const lockSpan = byName(spans, "StateManager.lock").find((s) => s.status.code !== 2)!
  expect(
    spans.some((s) => s.name === "Registry.putManifest" && s.parentSpanContext?.spanId === lockSpan.spanContext().spanId)
  ).toBe(true)

  // HTTP client spans (HttpRegistry only): method, status, no query strings, under a Registry span.
  const httpSpans = spans.filter((s) => s.name.startsWith("http.client "))
  if (expected.http) {
    expect(httpSpans.length).toBeGreaterThan(0)
    for (const span of httpSpans) {
      expect(span.kind).toBe(2) // SpanKind.CLIENT
      expect(span.attributes["http.request.method"]).toBe(span.name.slice("http.client ".length))
      expect(typeof span.attributes["http.response.status_code"]).toBe("number")
      expect(String(span.attributes["url.full"])).not.toMatch(/[?#]/)
      expect(span.attributes["url.query"]).toBeUndefined()
      expect(Object.keys(span.attributes).filter((k) => k.startsWith("http.request.header") || k.startsWith("http.response.header")))
        .toEqual([])
      expect(ancestors(spans, span).some((a) => a.name.startsWith("Registry.")), `${span.name} has a Registry parent`)
        .toBe(true)
    }
    // The blob upload PUT goes to the Location the registry gave (with its `_state` query).
    const uploadPut = httpSpans.find((s) =>
      s.attributes["http.request.method"] === "PUT" && String(s.attributes["url.path"]).includes("/blobs/uploads/")
    )
    expect(uploadPut?.attributes["http.response.status_code"]).toBe(201)
    expect(ancestors(spans, uploadPut!).map((a) => a.name)).toEqual(
      expect.arrayContaining(["Registry.putBlob", "StateManager.put"])
    )
  } else {
    expect(httpSpans).toEqual([])
  }

  // Metrics.
  const ops = "oras_state.operations"
  expect(grown(grownPoints, ops, { operation: "put", outcome: "success" })).toBe(2)
  expect(grown(grownPoints, ops, { operation: "get", outcome: "success" })).toBe(1)
  expect(grown(grownPoints, ops, { operation: "lock", outcome: "success" })).toBe(1)
  expect(grown(grownPoints, ops, { operation: "lock", outcome: "failure", "error.type": "LockConflict" })).toBe(1)
  expect(grown(grownPoints, ops, { operation: "unlock", outcome: "success" })).toBe(1)
  expect(grown(grownPoints, ops, { operation: "versions", outcome: "success" })).toBe(1)
  expect(grown(grownPoints, "oras_state.lock.wait.duration", { outcome: "acquired", unit: "ms" })).toBe(1)
  expect(grown(grownPoints, "oras_state.lock.wait.duration", { outcome: "conflict" })).toBe(1)
  expect(grown(grownPoints, "oras_state.lock.hold.duration", { unit: "ms" })).toBe(1)
  const bytes = "oras_state.registry.bytes"
  expect(grown(grownPoints, bytes, { direction: "upload", kind: "blob", unit: "By" })).toBeGreaterThanOrEqual(
    stateBytes(1).byteLength + stateBytes(2).byteLength
  )
  expect(grown(grownPoints, bytes, { direction: "download", kind: "blob" })).toBeGreaterThanOrEqual(
    stateBytes(1).byteLength
  )
  expect(grown(grownPoints, bytes, { direction: "upload", kind: "manifest" })).toBeGreaterThan(0)
  expect(grown(grownPoints, bytes, { direction: "download", kind: "manifest" })).toBeGreaterThan(0)
}

/** Run `body` with the SDK and `registry` provided; returns what was exported, read before shutdown. */
const withTelemetry = <A, E>(
  registry: Layer.Layer<Registry, unknown>,
  repository: string,
  body: Effect.Effect<A, E, StateBackend.StateBackend | Registry>
) => {
  const telemetry = makeTelemetry()
  return Effect.gen(function*() {
    const before = yield* telemetry.collect
    const result = yield* Effect.either(body)
    const after = yield* telemetry.collect
    return {
      result,
      spans: telemetry.spans.getFinishedSpans().slice(),
      grown: delta(before, after),
      metrics: after
    }
  }).pipe(
    Effect.provide(StateBackend.layer({ repository, versioning: { enabled: true } }).pipe(Layer.provideMerge(registry))),
    Effect.provide(telemetry.layer)
  )
}

const httpLayer = (
  registry: string,
  credentials: Layer.Layer<Credentials.Credentials>,
  options: Partial<HttpRegistry.Options> = {}
) =>
  HttpRegistry.layerNode({ registry, retry: { maxRetries: 0 }, ...options }).pipe(
    Layer.provide(credentials),
    Layer.provide(RateLimiter.layerUnlimited)
  )

describe("telemetry", () => {
  it.live("MemoryRegistry: state and Registry spans, nesting, metrics", () =>
    Effect.gen(function*() {
      const repository = `${run}/memory`
      const out = yield* withTelemetry(MemoryRegistry.layer(), repository, sequence)
      expect(out.result._tag).toBe("Right")
      checkTelemetry(out.spans, out.grown, { registry: "memory", repository, http: false })
      expect(exportedText(out.spans, out.metrics)).not.toContain(secretMarker)
    }))

  it.scopedLive("OciLayoutRegistry: the same Registry spans and metrics", () =>
    Effect.gen(function*() {
      const dir = yield* Effect.acquireRelease(
        Effect.promise(() => Fs.mkdtemp(Path.join(Os.tmpdir(), "oras-state-telemetry-"))),
        (path) => Effect.promise(() => Fs.rm(path, { recursive: true, force: true }))
      )
      const repository = `${run}/layout`
      const out = yield* withTelemetry(OciLayoutRegistry.layer(dir), repository, sequence)
      if (out.result._tag === "Left") throw out.result.left
      checkTelemetry(out.spans, out.grown, { registry: `oci-layout:${Path.resolve(dir)}`, repository, http: false })
      expect(exportedText(out.spans, out.metrics)).not.toContain(secretMarker)
    }))

  it.live("HttpRegistry on the plain registry: state, Registry and http.client spans, metrics", () =>
    Effect.gen(function*() {
      const repository = `${run}/plain`
      const out = yield* withTelemetry(httpLayer(registries.plain.host, Credentials.layerNone), repository, sequence)
      expect(out.result._tag).toBe("Right")
      checkTelemetry(out.spans, out.grown, { registry: registries.plain.host, repository, http: true })
      const text = exportedText(out.spans, out.metrics)
      expect(text).not.toContain(secretMarker)
      expect(text).not.toContain("_state=")
    }))

  it.live("token auth, a retried 503 and a failing read: no credential, token or state byte in any telemetry", () =>
    Effect.gen(function*() {
      const r = registries.token
      const repository = `${run}/token`
      const basic = `Basic ${Buffer.from(`${r.username}:${r.password}`, "utf8").toString("base64")}`
      // Every Authorization value the client sent (Basic to the token server, Bearer to the registry).
      const sent = new Set<string>()
      // A repository whose token requests fail: the error then carries what the token server echoed.
      const denied = `${repository}-denied`
      let transient = 0
      const transformClient = (client: HttpClient.HttpClient): HttpClient.HttpClient =>
        HttpClient.makeWith<never, never, HttpClientError.HttpClientError, never>(
          (request) =>
            Effect.flatMap(request, (req) => {
              const authorization = req.headers["authorization"]
              if (authorization !== undefined) sent.add(authorization)
              // One transient failure on the first state read, every read of workspace `broken`
              // and every token request for `denied`: a 503 whose body echoes the credentials the
              // request carried.
              const url = new URL(req.url)
              const first = authorization !== undefined && req.method === "GET" &&
                url.pathname.endsWith("/manifests/state-default") && transient++ === 0
              const broken = url.pathname.endsWith("/manifests/state-broken")
              const deniedToken = url.pathname === "/token" &&
                UrlParams.getAll(req.urlParams, "scope").some((scope) => scope.startsWith(`repository:${denied}:`))
              if (authorization !== undefined && (first || broken || deniedToken)) {
                // The bare credential (no scheme) is only caught by scrubbing what the request carried.
                const bare = authorization.slice(authorization.indexOf(" ") + 1)
                const body = JSON.stringify({
                  errors: [{ code: "UNAVAILABLE", message: `${bare} was refused: overloaded`, detail: authorization }]
                })
                return Effect.succeed(
                  HttpClientResponse.fromWeb(
                    req,
                    new Response(body, { status: 503, headers: { "content-type": "application/json" } })
                  )
                )
              }
              return client.execute(req)
            }),
          (req) => Effect.succeed(req)
        )
      const layer = httpLayer(
        r.host,
        Credentials.layerStatic({ [r.host]: { _tag: "Basic", username: r.username, password: Redacted.make(r.password) } }),
        { retry: { maxRetries: 2, waitMin: "5 millis", jitter: false }, transformClient }
      )
      const out = yield* withTelemetry(
        layer,
        repository,
        Effect.gen(function*() {
          yield* sequence
          const broken = yield* (yield* StateBackend.StateBackend).stateManager("broken")
          const failure = yield* Effect.flip(broken.get)
          expect(failure._tag).toBe("TransientRegistry")
          const denial = yield* Effect.flip((yield* Registry).getManifest(denied, "latest"))
          expect(denial._tag).toBe("TransientRegistry")
        })
      )
      if (out.result._tag === "Left") throw out.result.left
      checkTelemetry(out.spans, out.grown, { registry: r.host, repository, http: true })

      // The retried read: retry.count on its Registry span, counted by operation.
      const retried = out.spans.filter((s) => s.name === "Registry.getManifest" && s.attributes["retry.count"] === 1)
      expect(retried.length).toBeGreaterThan(0)
      expect(out.spans.some((s) => s.name === "http.client GET" && s.attributes["http.response.status_code"] === 503))
        .toBe(true)
      expect(grown(out.grown, "oras_state.registry.retries", { operation: "getManifest" })).toBe(1 + 2)
      // The failing read: recorded as a failed state operation, with its error on the spans.
      expect(grown(out.grown, "oras_state.operations", { operation: "get", outcome: "failure", "error.type": "TransientRegistry" }))
        .toBe(1)
      const brokenGet = out.spans.find((s) => s.name === "StateManager.get" && s.attributes["workspace"] === "broken")!
      expect(brokenGet.attributes["retry.count"]).toBeUndefined()
      expect(brokenGet.status.code).toBe(2) // ERROR
      const brokenRead = out.spans.find((s) =>
        s.name === "Registry.getManifest" && s.attributes["oci.reference"] === "state-broken"
      )!
      expect(brokenRead.attributes["retry.count"]).toBe(2)
      expect(brokenRead.events.map((e) => e.name)).toContain("exception")
      // Token fetches: http.client spans under `Registry.fetchToken` (its own trace: tokens are
      // cached and shared between requests).
      const tokenHttp = out.spans.filter((s) => s.name === "http.client GET" && s.attributes["url.path"] === "/token")
      expect(tokenHttp.length).toBeGreaterThan(0)
      for (const span of tokenHttp) {
        const parents = ancestors(out.spans, span)
        expect(parents[0]?.name).toBe("Registry.fetchToken")
        expect(parents[0]?.attributes).toMatchObject({ operation: "fetchToken", "oci.registry": r.host })
      }
      const deniedFetch = out.spans.filter((s) => s.name === "Registry.fetchToken" && s.attributes["oci.repository"] === denied)
      expect(deniedFetch.length).toBe(3) // first try and two retries of getManifest, each asking again
      for (const span of deniedFetch) {
        expect(span.status.code).toBe(2)
        expect(span.events.map((e) => e.name)).toContain("exception")
      }
      expect(grown(out.grown, "oras_state.registry.retries", { operation: "fetchToken" })).toBe(2)

      // The scan.
      const bearer = [...sent].filter((v) => v.startsWith("Bearer "))
      expect(sent.has(basic)).toBe(true)
      expect(bearer.length).toBeGreaterThan(0)
      const secrets = [
        r.password,
        basic,
        basic.slice("Basic ".length),
        ...bearer,
        ...bearer.map((v) => v.slice("Bearer ".length)),
        // Any part of a token is a leak (error text is cut to a few hundred characters).
        ...bearer.flatMap((v) => [v.slice("Bearer ".length, "Bearer ".length + 40), v.slice(-40)]),
        secretMarker
      ]
      const text = exportedText(out.spans, out.metrics)
      expect(text.length).toBeGreaterThan(10_000)
      for (const secret of secrets) {
        expect(secret.length).toBeGreaterThan(8)
        expect(text.includes(secret), `telemetry contains a secret (${secret.slice(0, 6)}…)`).toBe(false)
      }
      expect(text).not.toContain("_state=")
      expect(text).not.toContain("account=")
      console.log(
        `telemetry secret scan: ${out.spans.length} spans, ${pointsOf(out.metrics).length} metric points, ` +
          `${secrets.length} secret values (${bearer.length} bearer tokens) checked, 0 found`
      )
    }))
})
