/**
 * Span and metric helpers shared by the state store and the `Registry` layers (see `Telemetry`
 * for what is emitted). Attributes are built from names, sizes and counts only: no credential,
 * URL query string, header or state content ever reaches a span or a metric label.
 *
 * @internal
 */
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import * as HttpTraceContext from "@effect/platform/HttpTraceContext"
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import type * as Tracer from "effect/Tracer"
import type { Service } from "../Registry.js"
import * as Telemetry from "../Telemetry.js"
import * as Keys from "./metricKeys.js"

const A = Telemetry.Attribute

// -- state operations ------------------------------------------------------------------------------

const errorType = (error: unknown): string =>
  typeof error === "object" && error !== null && "_tag" in error && typeof error._tag === "string"
    ? error._tag
    : "unknown"

const operationCounter = Keys.labelled(Keys.stateOperations)
const lockWaitHistogram = Keys.labelled(Keys.lockWaitTime)
const lockHoldHistogram = Keys.labelled(Keys.lockHoldTime)([])
const retryCounter = Keys.labelled(Keys.retries)
const bytesCounter = Keys.labelled(Keys.bytesMoved)

const countOperation = (operation: string, exit: Exit.Exit<unknown, unknown>) => {
  if (Exit.isSuccess(exit)) return Metric.increment(operationCounter([["operation", operation], ["outcome", "success"]]))
  if (Cause.isInterruptedOnly(exit.cause)) {
    return Metric.increment(operationCounter([["operation", operation], ["outcome", "interrupted"]]))
  }
  const failure = Cause.failureOption(exit.cause)
  return Metric.increment(operationCounter([
    ["operation", operation],
    ["outcome", "failure"],
    ["error.type", Option.isSome(failure) ? errorType(failure.value) : "defect"]
  ]))
}

/**
 * A state operation: span `name` (attributes `operation` and `attributes`) and one count in
 * `Telemetry.stateOperations` by outcome.
 *
 * @internal
 */
export const stateOperation = (name: string, operation: string, attributes: Record<string, unknown>) =>
<A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E, Exclude<R, Tracer.ParentSpan>> =>
  whenTraced(
    Effect.onExit(self, (exit) => countOperation(operation, exit)),
    // No stack trace: capturing one per operation was measurable, and it shows the runtime's
    // frames rather than the caller's.
    Effect.withSpan(name, { captureStackTrace: false, attributes: { [A.operation]: operation, ...attributes } })
  )

// Effect's built-in tracer: the one in place when the application installs none, which keeps
// its spans nowhere. Under it the library makes no spans — each one copies the fiber's context
// twice (~15 KB and ~5 µs), several per request, which showed in every latency and in how often
// V8 collected the old generation. Any other tracer (OpenTelemetry, a test's) gets them all.
const builtInTracer: Tracer.Tracer = Effect.runSync(Effect.tracer)

/**
 * `self` with `addSpan` applied, unless the current tracer is Effect's built-in one.
 *
 * @internal
 */
export const whenTraced = <A, E, R>(
  self: Effect.Effect<A, E, R>,
  addSpan: (self: Effect.Effect<A, E, R>) => Effect.Effect<A, E, Exclude<R, Tracer.ParentSpan>>
): Effect.Effect<A, E, Exclude<R, Tracer.ParentSpan>> =>
  Effect.tracerWith((tracer) =>
    // The library's effects never require a parent span; only the type says they might.
    tracer === builtInTracer ? self as Effect.Effect<A, E, Exclude<R, Tracer.ParentSpan>> : addSpan(self)
  )

/** Attributes every state span carries (`workspace` where there is one). @internal */
export const stateAttributes = (registry: Service, repository: string, workspace?: string): Record<string, unknown> => ({
  ...(workspace === undefined ? {} : { [A.workspace]: workspace }),
  [A.registry]: registryName(registry.location),
  [A.repository]: repository
})

// The registry's host (as on `Registry.<operation>` spans) when its location is an http(s) URL.
// Remembered per location: a URL parse per state operation is measurable.
const registryNames = new Map<string, string>()
const registryName = (location: string): string => {
  let name = registryNames.get(location)
  if (name === undefined) {
    name = parseRegistryName(location)
    if (registryNames.size < 1024) registryNames.set(location, name)
  }
  return name
}

const parseRegistryName = (location: string): string => {
  try {
    const url = new URL(location)
    return url.protocol === "http:" || url.protocol === "https:" ? url.host : location
  } catch {
    return location
  }
}

/** Set `bytes` on the current span. @internal */
export const annotateBytes = (bytes: number): Effect.Effect<void> => annotateWhenTraced(A.bytes, bytes)

// Under Effect's built-in tracer the library makes no span (see `whenTraced`), so there is none of
// ours to annotate; and looking for a current span where there is none fails with an exception
// whose stack trace is captured — on every get, for nothing.
const annotateWhenTraced = (key: string, value: unknown): Effect.Effect<void> =>
  Effect.tracerWith((tracer) => tracer === builtInTracer ? Effect.void : Effect.annotateCurrentSpan(key, value))

// -- locks -----------------------------------------------------------------------------------------

const lockOutcome = (exit: Exit.Exit<unknown, unknown>): string => {
  if (Exit.isSuccess(exit)) return "acquired"
  if (Cause.isInterruptedOnly(exit.cause)) return "interrupted"
  const failure = Cause.failureOption(exit.cause)
  return Option.isSome(failure) && errorType(failure.value) === "LockConflict" ? "conflict" : "failure"
}

/** Record `Telemetry.lockWaitTime` for a lock request. @internal */
export const timeLockWait = <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.flatMap(Clock.currentTimeNanos, (start) =>
    Effect.onExit(self, (exit) =>
      Effect.flatMap(Clock.currentTimeNanos, (end) =>
        Metric.update(lockWaitHistogram([["outcome", lockOutcome(exit)]]), Number(end - start) / 1e6))))

/** Record `Telemetry.lockHoldTime` for a lock acquired at `acquiredAt` (epoch ms, `Clock`). @internal */
export const recordLockHold = (acquiredAt: number): Effect.Effect<void> =>
  Effect.flatMap(Clock.currentTimeMillis, (now) =>
    Metric.update(lockHoldHistogram, Math.max(0, now - acquiredAt)))

// -- retries and bytes -------------------------------------------------------------------------------

/**
 * A retry is about to start: count it, and set `retry.count` (retries so far) on the current span.
 *
 * @internal
 */
export const recordRetry = (operation: string, count: number): Effect.Effect<void> =>
  Effect.zipRight(
    annotateWhenTraced(A.retryCount, count),
    Metric.increment(retryCounter([["operation", operation]]))
  )

/** @internal */
export const countBytes = (
  direction: "upload" | "download",
  kind: "blob" | "manifest",
  bytes: number
): Effect.Effect<void> =>
  bytes <= 0 ? Effect.void : Metric.incrementBy(bytesMetrics[direction][kind], bytes)

const bytesMetrics = {
  upload: { blob: bytesCounter([["direction", "upload"], ["kind", "blob"]]), manifest: bytesCounter([["direction", "upload"], ["kind", "manifest"]]) },
  download: {
    blob: bytesCounter([["direction", "download"], ["kind", "blob"]]),
    manifest: bytesCounter([["direction", "download"], ["kind", "manifest"]])
  }
} as const

// -- registry operations -----------------------------------------------------------------------------

/** @internal */
export interface RegistrySpan {
  readonly registry: string
  readonly repository: string
  readonly reference?: string | undefined
  readonly bytes?: number | undefined
  /** Implementation-specific extras (e.g. `oci.layout`). */
  readonly extra?: Record<string, unknown> | undefined
}

/** Options of the `Registry.<operation>` span, the same for every `Registry` layer. @internal */
export const registrySpanOptions = (
  operation: string,
  span: RegistrySpan,
  kind: Tracer.SpanKind = "internal"
): Tracer.SpanOptions => ({
  kind,
  // A stack trace per registry call is measurable on the hot path and adds nothing: the state
  // operation span above it carries the caller's.
  captureStackTrace: false,
  attributes: {
    [A.operation]: operation,
    [A.registry]: span.registry,
    [A.repository]: span.repository,
    ...(span.reference === undefined ? {} : { [A.reference]: span.reference }),
    ...(span.bytes === undefined ? {} : { [A.bytes]: span.bytes }),
    ...span.extra
  }
})

/** The `Registry.<operation>` span around an effect. @internal */
export const registrySpan = (operation: string, span: RegistrySpan, kind?: Tracer.SpanKind) =>
<A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E, Exclude<R, Tracer.ParentSpan>> =>
  whenTraced(self, Effect.withSpan(`Registry.${operation}`, registrySpanOptions(operation, span, kind)))

/** The `Registry.<operation>` span around a stream. @internal */
export const registryStreamSpan = (operation: string, span: RegistrySpan, kind?: Tracer.SpanKind) =>
<A, E, R>(self: Stream.Stream<A, E, R>): Stream.Stream<A, E, Exclude<R, Tracer.ParentSpan>> =>
  Stream.unwrap(Effect.tracerWith((tracer) =>
    Effect.succeed(
      tracer === builtInTracer
        ? self as Stream.Stream<A, E, Exclude<R, Tracer.ParentSpan>>
        : Stream.withSpan(self, `Registry.${operation}`, registrySpanOptions(operation, span, kind))
    )
  ))

/**
 * Wrap a `Registry` service so that it counts the bytes it moves (`Telemetry.bytesMoved`) and,
 * with `spans`, emits the `Registry.<operation>` spans (for layers that do not emit their own).
 *
 * @internal
 */
export const instrumentRegistry = (service: Service, options: { readonly spans: boolean }): Service => {
  const registry = service.location
  const span = (operation: string, repository: string, reference?: string, bytes?: number) =>
  <A, E>(self: Effect.Effect<A, E>): Effect.Effect<A, E> =>
    options.spans ? registrySpan(operation, { registry, repository, reference, bytes })(self) : self
  const streamSpan = (operation: string, repository: string, reference?: string, bytes?: number) =>
  <A, E>(self: Stream.Stream<A, E>): Stream.Stream<A, E> =>
    options.spans ? registryStreamSpan(operation, { registry, repository, reference, bytes })(self) : self
  return {
    location: service.location,
    resolveManifest: (repository, reference) =>
      service.resolveManifest(repository, reference).pipe(span("resolveManifest", repository, reference)),
    getManifest: (repository, reference) =>
      service.getManifest(repository, reference).pipe(
        Effect.tap((manifest) =>
          Option.isSome(manifest) ? countBytes("download", "manifest", manifest.value.bytes.byteLength) : Effect.void
        ),
        span("getManifest", repository, reference)
      ),
    putManifest: (repository, reference, manifest) =>
      service.putManifest(repository, reference, manifest).pipe(
        Effect.tap(() => countBytes("upload", "manifest", manifest.bytes.byteLength)),
        span("putManifest", repository, reference, manifest.bytes.byteLength)
      ),
    deleteManifest: (repository, reference) =>
      service.deleteManifest(repository, reference).pipe(span("deleteManifest", repository, reference)),
    blobExists: (repository, digest) => service.blobExists(repository, digest).pipe(span("blobExists", repository, digest)),
    getBlob: (repository, blob) =>
      service.getBlob(repository, blob).pipe(
        Stream.mapChunksEffect((chunk) => {
          let bytes = 0
          for (const part of chunk) bytes += part.byteLength
          return Effect.as(countBytes("download", "blob", bytes), chunk)
        }),
        streamSpan("getBlob", repository, blob.digest, blob.size)
      ),
    getBlobBytes: (repository, blob) =>
      service.getBlobBytes(repository, blob).pipe(
        Effect.tap((bytes) => countBytes("download", "blob", bytes.byteLength)),
        span("getBlob", repository, blob.digest, blob.size)
      ),
    putBlob: (repository, blob, body) =>
      service.putBlob(repository, blob, body).pipe(
        Effect.tap(() => countBytes("upload", "blob", blob.size)),
        span("putBlob", repository, blob.digest, blob.size)
      ),
    startBlobUpload: (repository) =>
      service.startBlobUpload(repository).pipe(
        span("startBlobUpload", repository),
        Effect.map((upload) => ({
          finish: (blob, body) =>
            upload.finish(blob, body).pipe(
              Effect.tap(() => countBytes("upload", "blob", blob.size)),
              span("putBlob", repository, blob.digest, blob.size)
            )
        }))
      ),
    listTags: (repository, listOptions) =>
      service.listTags(repository, listOptions).pipe(streamSpan("listTags", repository)),
    listAllTags: (repository, listOptions) => service.listAllTags(repository, listOptions).pipe(span("listTags", repository))
  }
}

// -- HTTP exchanges ----------------------------------------------------------------------------------

/**
 * The `http.client <METHOD>` span of one HTTP exchange. Its attributes are a fixed list (the
 * platform client's own span records the full URL with its query string, and response headers
 * such as `Location`, which may carry signed storage URLs): method, status, host, port, scheme,
 * path, and `url.full` without userinfo, query or fragment.
 *
 * @internal
 */
export const httpClientSpan = (method: string, url: URL) =>
<A extends { readonly status: number }, E, R>(
  self: Effect.Effect<A, E, R>
): Effect.Effect<A, E, Exclude<R, Tracer.ParentSpan>> =>
  whenTraced(self, (self) =>
    self.pipe(
      Effect.tap((response) => Effect.annotateCurrentSpan("http.response.status_code", response.status)),
      Effect.withSpan(`http.client ${method}`, {
        kind: "client",
        captureStackTrace: false,
        attributes: {
          "http.request.method": method,
          "server.address": url.hostname,
          "server.port": url.port === "" ? (url.protocol === "https:" ? 443 : 80) : Number(url.port),
          "url.scheme": url.protocol.slice(0, -1),
          "url.path": url.pathname,
          "url.full": `${url.protocol}//${url.host}${url.pathname}`
        }
      })
    ))

/**
 * The client as the transport uses it: the platform's own span is turned off (see
 * `httpClientSpan`), and the current span's trace context is propagated instead, unless
 * `HttpClient.withTracerPropagation(false)` is in effect.
 *
 * @internal
 */
export const withSafeTracing = (client: HttpClient.HttpClient): HttpClient.HttpClient =>
  HttpClient.mapRequestEffect(
    HttpClient.withTracerDisabledWhen(client, () => true),
    (request) => Effect.map(propagationHeaders, (headers) => HttpClientRequest.setHeaders(request, headers))
  )

/**
 * The W3C / B3 trace-context headers of the current span (none without one, or under
 * `HttpClient.withTracerPropagation(false)`). Read off the fiber in one step: a span lookup per
 * request through `Effect.currentSpan` cost several effects.
 *
 * @internal
 */
export const propagationHeaders: Effect.Effect<Record<string, string>> = Effect.withFiberRuntime((fiber) => {
  const span = fiber.currentSpan
  return Effect.succeed(
    span !== undefined && span._tag === "Span" && fiber.getFiberRef(HttpClient.currentTracerPropagation)
      ? HttpTraceContext.toHeaders(span)
      : {}
  )
})
