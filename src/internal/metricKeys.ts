/**
 * The keys of the library's metrics (`Telemetry` exports the metrics built on them), and metrics
 * with fixed extra labels for the code that updates them.
 *
 * Why keys: `Metric.tagged` unions its labels into a fresh array on every update, which misses the
 * metric registry's per-labels cache, so each update built and hashed a new `MetricKey` — on every
 * state operation and every download. A metric made from a key that already carries its labels
 * (`Metric.fromMetricKey`) finds its hook once and updates it directly.
 *
 * @internal
 */
import * as Metric from "effect/Metric"
import * as MetricBoundaries from "effect/MetricBoundaries"
import * as MetricKey from "effect/MetricKey"
import type * as MetricKeyType from "effect/MetricKeyType"

/** @internal */
export const stateOperations = MetricKey.counter("oras_state.operations", {
  description: "State operations, by operation and outcome",
  incremental: true
})

// A histogram of milliseconds, doubling buckets from `start`, labelled with its unit.
const millisecondsHistogram = (name: string, start: number, count: number, description: string) =>
  MetricKey.tagged(
    MetricKey.histogram(name, MetricBoundaries.exponential({ start, factor: 2, count }), description),
    "unit",
    "ms"
  )

/** @internal */
export const lockWaitTime = millisecondsHistogram(
  "oras_state.lock.wait.duration",
  1,
  18,
  "Time from a lock request to acquisition or conflict (ms)"
)

/** @internal */
export const lockHoldTime = millisecondsHistogram(
  "oras_state.lock.hold.duration",
  10,
  20,
  "Time a lock was held, from acquisition to release (ms)"
)

/** @internal */
export const retries = MetricKey.counter("oras_state.registry.retries", {
  description: "Retries after transient registry failures, by operation",
  incremental: true
})

/** @internal */
export const bytesMoved = MetricKey.tagged(
  MetricKey.counter("oras_state.registry.bytes", {
    description: "Bytes moved to and from the registry, by direction and kind",
    incremental: true
  }),
  "unit",
  "By"
)

/**
 * The metric of `key` with the extra `labels`, built once per distinct label set.
 *
 * @internal
 */
export const labelled = <Type extends MetricKeyType.MetricKeyType<any, any>>(key: MetricKey.MetricKey<Type>) => {
  const cache = new Map<
    string,
    Metric.Metric<Type, MetricKeyType.MetricKeyType.InType<Type>, MetricKeyType.MetricKeyType.OutType<Type>>
  >()
  return (labels: ReadonlyArray<readonly [string, string]>) => {
    const id = labels.map(([name, value]) => `${name}\u0000${value}`).join("\u0001")
    let metric = cache.get(id)
    if (metric === undefined) {
      metric = Metric.fromMetricKey(labels.reduce((k, [name, value]) => MetricKey.tagged(k, name, value), key))
      cache.set(id, metric)
    }
    return metric
  }
}
