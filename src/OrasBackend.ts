/**
 * `OrasBackend.layer(config)`: everything wired from a `BackendConfig` — the HTTP registry client
 * (TLS options, retry policy, user agent), credentials, the rate limiter and the state store —
 * providing `StateBackend`.
 *
 * @since 0.1.0
 */
import * as Duration from "effect/Duration"
import * as Layer from "effect/Layer"
import * as BackendConfig from "./BackendConfig.js"
import * as Credentials from "./Credentials.js"
import type { InvalidConfig, InvalidReference } from "./Errors.js"
import * as HttpRegistry from "./HttpRegistry.js"
import * as RateLimiter from "./RateLimiter.js"
import * as StateBackend from "./StateBackend.js"

/**
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** Where credentials come from (default: none, anonymous). */
  readonly credentials?: Layer.Layer<Credentials.Credentials, unknown> | undefined
}

/**
 * The `Registry` layer a configuration describes.
 *
 * @since 0.1.0
 * @category layers
 */
export const registryLayer = (config: BackendConfig.BackendConfig) => {
  const repository = BackendConfig.parseRepository(config.repository)!
  return HttpRegistry.layerNode({
    registry: repository.registry,
    plainHttp: repository.plainHttp || config.insecure,
    insecure: config.insecure,
    caFile: config.ca_file,
    userAgent: config.user_agent,
    retry: {
      maxRetries: config.retry_max,
      waitMin: Duration.seconds(config.retry_wait_min),
      waitMax: Duration.seconds(config.retry_wait_max)
    }
  })
}

/**
 * The state store options a configuration describes.
 *
 * @since 0.1.0
 * @category constructors
 */
export const storeOptions = (config: BackendConfig.BackendConfig): StateBackend.Options => {
  const versioning = BackendConfig.versioningOf(config)
  return {
    repository: BackendConfig.parseRepository(config.repository)!.path,
    compression: config.compression,
    maxStateSize: config.max_state_size,
    versioning: { enabled: versioning.enabled, maxVersions: versioning.maxVersions },
    lockTtl: Duration.seconds(config.lock_ttl)
  }
}

/**
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  config: BackendConfig.BackendConfig,
  options: Options = {}
): Layer.Layer<StateBackend.StateBackend, InvalidConfig | InvalidReference | unknown> =>
  StateBackend.layer(storeOptions(config)).pipe(
    Layer.provide(registryLayer(config)),
    Layer.provide(options.credentials ?? Credentials.layerNone),
    Layer.provide(RateLimiter.layer({ limit: config.rate_limit, burst: config.rate_limit_burst }))
  )
