/**
 * Telemetry: the spans and metrics the library emits, and how an application exports them.
 *
 * The library depends only on `effect`'s own `Tracer` and `Metric` APIs; it never starts an SDK.
 * Nothing is exported until the application provides one, typically `@effect/opentelemetry`
 * (devDependency of this package; the application installs it with the OpenTelemetry SDK packages
 * it wants):
 *
 * ```ts
 * import { NodeSdk } from "@effect/opentelemetry"
 * import { OTLPMetricExporter } from "@opentelemetry/exporter-metrics-otlp-http"
 * import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-http"
 * import { PeriodicExportingMetricReader } from "@opentelemetry/sdk-metrics"
 * import { BatchSpanProcessor } from "@opentelemetry/sdk-trace-base"
 *
 * const TelemetryLive = NodeSdk.layer(() => ({
 *   resource: { serviceName: "my-deployer" },
 *   spanProcessor: new BatchSpanProcessor(new OTLPTraceExporter()),
 *   metricReader: new PeriodicExportingMetricReader({ exporter: new OTLPMetricExporter() })
 * }))
 *
 * program.pipe(Effect.provide(StateLive), Effect.provide(TelemetryLive))
 * ```
 *
 * `Otlp.layer({ baseUrl, resource })` from `@effect/opentelemetry` (no OpenTelemetry SDK needed)
 * works the same way. Effect metrics are process-global: the metric reader exports every metric
 * below that was updated anywhere in the process.
 *
 * ## Spans
 * Made only under an installed tracer: under Effect's built-in one (no tracer provided), which
 * keeps spans nowhere, the library makes none — each would only cost time and memory.
 *
 * - `StateManager.<op>` (`get`, `put`, `delete`, `lock`, `unlock`, `forceUnlock`, `lockInfo`,
 *   `withLock`, `renewLease`, `versions`, `getVersion`, `restore`, `outputs`, `retention`) and
 *   `StateBackend.workspaces` / `StateBackend.deleteWorkspace`: attributes `operation`,
 *   `workspace`, `oci.registry`, `oci.repository`; `bytes` (decoded state size) on `get`, `put`
 *   and `getVersion`; `version` where one is asked; `retry.count` on `lock` when an attempt was
 *   made again after a transient failure.
 * - `Registry.<op>` (`resolveManifest`, `getManifest`, `putManifest`, `deleteManifest`,
 *   `blobExists`, `getBlob` (also for `getBlobBytes`), `putBlob` (also for an upload session's
 *   `finish`), `startBlobUpload`, `listTags` (also for `listAllTags`)) from every `Registry`
 *   layer (HTTP, memory, OCI layout), children of the state operation that issued them:
 *   `operation`, `oci.registry` (host, or `memory` / `oci-layout:<dir>`), `oci.repository`,
 *   `oci.reference` (tag or digest), `bytes` (blob or manifest size, where known up front),
 *   `retry.count` (retries this call needed, set when there was at least one).
 * - `Registry.fetchToken` (`HttpRegistry`, token auth): a bearer-token request. Tokens are cached
 *   and shared by concurrent requests, so a fetch is a trace of its own (not a child of the
 *   request that triggered it).
 * - `http.client <METHOD>` (kind `client`, `HttpRegistry` only), one per HTTP exchange (auth
 *   retries, redirects and token requests included), children of the `Registry.<op>` span:
 *   `http.request.method`, `http.response.status_code`, `server.address`, `server.port`,
 *   `url.scheme`, `url.path` and `url.full` **without query string**. These replace the
 *   platform client's own span (which records full URLs and response headers such as a signed
 *   redirect `Location`); trace context is still propagated (`traceparent`, `b3`) unless
 *   `HttpClient.withTracerPropagation(false)` is in effect.
 *
 * What never appears in a span, event or metric label: credentials (passwords, `Authorization`
 * values, bearer or refresh tokens), URL query strings (upload `_state`, signed storage redirects,
 * token-realm parameters), request or response headers, and state content. Failures are recorded
 * as the library's tagged errors, whose messages are already free of credentials.
 *
 * @since 0.1.0
 */
import * as Metric from "effect/Metric"
import * as Keys from "./internal/metricKeys.js"

/**
 * State operations that finished, by `operation` (`get`, `put`, `lock`, …), `outcome`
 * (`success`, `failure`, `interrupted`) and, on failure, `error.type` (the error's tag, e.g.
 * `LockConflict`, `TransientRegistry`, or `defect`).
 *
 * @since 0.1.0
 * @category metrics
 */
export const stateOperations: Metric.Metric.Counter<number> = Metric.fromMetricKey(Keys.stateOperations)

/**
 * Time from a `lock` call to its answer, in milliseconds, by `outcome`: `acquired`, `conflict`
 * (someone else holds it), `failure` or `interrupted`. Contention backoff is included.
 *
 * @since 0.1.0
 * @category metrics
 */
export const lockWaitTime: Metric.Metric.Histogram<number> = Metric.fromMetricKey(Keys.lockWaitTime)

/**
 * Time a lock was held by this process, from acquisition to release, in milliseconds (recorded
 * when this process releases or force-unlocks a lock it acquired itself).
 *
 * @since 0.1.0
 * @category metrics
 */
export const lockHoldTime: Metric.Metric.Histogram<number> = Metric.fromMetricKey(Keys.lockHoldTime)

/**
 * Retries after transient failures, by `operation`: the registry operation retried
 * (`getManifest`, `putBlob`, `fetchToken`, …), or `lock` for a lock attempt made again.
 *
 * @since 0.1.0
 * @category metrics
 */
export const retries: Metric.Metric.Counter<number> = Metric.fromMetricKey(Keys.retries)

/**
 * Bytes moved to and from the registry, by `direction` (`upload`, `download`) and `kind`
 * (`blob`, `manifest`): downloads as they stream, uploads once the registry accepted them.
 *
 * @since 0.1.0
 * @category metrics
 */
export const bytesMoved: Metric.Metric.Counter<number> = Metric.fromMetricKey(Keys.bytesMoved)

/**
 * Names of the span attributes the library sets (other than the HTTP semantic conventions).
 *
 * @since 0.1.0
 * @category constants
 */
export const Attribute = {
  operation: "operation",
  workspace: "workspace",
  registry: "oci.registry",
  repository: "oci.repository",
  reference: "oci.reference",
  bytes: "bytes",
  retryCount: "retry.count"
} as const
