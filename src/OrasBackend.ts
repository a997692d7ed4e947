/**
 * `OrasBackend.layer(config)`: everything wired from a `BackendConfig` — the HTTP registry client
 * (TLS options, retry policy, user agent), credentials (by default the ambient chain documented in
 * `Credentials`: docker/podman config files and credential helpers), the rate limiter (every
 * registry request, token fetches included), the state store, and on `ghcr.io` the GitHub
 * Packages adapter for deletions the registry answers with 405.
 *
 * @since 0.1.0
 */
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as BackendConfig from "./BackendConfig.js"
import * as Credentials from "./Credentials.js"
import { InvalidConfig } from "./Errors.js"
import * as GitHubPackages from "./GitHubPackages.js"
import * as HttpRegistry from "./HttpRegistry.js"
import * as RateLimiter from "./RateLimiter.js"
import * as StateBackend from "./StateBackend.js"

/**
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** Where credentials come from (default: `Credentials.layerNode()`, the ambient chain). */
  readonly credentials?: Layer.Layer<Credentials.Credentials, unknown> | undefined
  /** GitHub REST API base for the GHCR deletion adapter (default https://api.github.com). */
  readonly githubApiBaseUrl?: string | undefined
}

type Repository = NonNullable<ReturnType<typeof BackendConfig.parseRepository>>

// `BackendConfig.decode` validates `repository`; a hand-built config may not have been.
const withRepository = <A, E, R>(
  config: BackendConfig.BackendConfig,
  f: (repository: Repository) => Layer.Layer<A, E, R>
): Layer.Layer<A, E | InvalidConfig, R> => {
  const parsed = BackendConfig.parseRepository(config.repository)
  return parsed === undefined
    ? Layer.fail(
      new InvalidConfig({
        key: "repository",
        value: config.repository,
        reason: "must be <registry host[:port]>/<repository path>, lowercase, without tag or digest"
      })
    )
    : f(parsed)
}

/**
 * The `Registry` layer a configuration describes.
 *
 * @since 0.1.0
 * @category layers
 */
export const registryLayer = (config: BackendConfig.BackendConfig) =>
  withRepository(config, (repository) =>
    HttpRegistry.layerNode({
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
  }))

/**
 * The state store options a configuration describes.
 *
 * @since 0.1.0
 * @category constructors
 */
export const storeOptions = (config: BackendConfig.BackendConfig, repositoryPath: string): StateBackend.Options => {
  const versioning = BackendConfig.versioningOf(config)
  return {
    repository: repositoryPath,
    compression: config.compression,
    maxStateSize: config.max_state_size,
    versioning: { enabled: versioning.enabled, maxVersions: versioning.maxVersions },
    lockTtl: Duration.seconds(config.lock_ttl)
  }
}

const isGhcr = (registry: string) => registry.replace(/^https?:\/\//, "").toLowerCase() === "ghcr.io"

/**
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  config: BackendConfig.BackendConfig,
  options: Options = {}
): Layer.Layer<StateBackend.StateBackend, unknown> =>
  withRepository(config, (repository) => {
  const credentials = options.credentials ?? Credentials.layerNode()
  const store = isGhcr(repository.registry)
    ? Layer.scoped(
      StateBackend.StateBackend,
      Effect.flatMap(GitHubPackages.GitHubPackages, (github) =>
        StateBackend.make({
          ...storeOptions(config, repository.path),
          deleteFallback: (tag, digest) => github.deleteVersion(repository.path, tag, digest)
        }))
    ).pipe(
      Layer.provide(GitHubPackages.layer({ apiBaseUrl: options.githubApiBaseUrl }).pipe(
        Layer.provide(NodeHttpClient.layerUndici)
      ))
    )
    : StateBackend.layer(storeOptions(config, repository.path))
  return store.pipe(
    Layer.provide(registryLayer(config)),
    Layer.provide(credentials),
    Layer.provide(RateLimiter.layer({ limit: config.rate_limit, burst: config.rate_limit_burst }))
  )
})

/**
 * The configuration from `TF_BACKEND_ORAS_*` (over `base`), wired.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerFromEnv = (
  base: Partial<BackendConfig.BackendConfigInput> = {},
  options: Options = {}
): Layer.Layer<StateBackend.StateBackend, unknown> =>
  Layer.unwrapEffect(Effect.map(BackendConfig.fromEnv(base), (config) => layer(config, options)))
