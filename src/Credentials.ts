/**
 * `Credentials`: for a registry host (and repository path), the credential to use, if any.
 * Every secret is `Redacted`; `Redacted.value` is called only where a header is built.
 *
 * ## Where credentials come from
 *
 * `Credentials.layer(sources)` (built on `Credentials.layerChain`) asks its sources in this order.
 * The first source that has a credential for the registry wins; a source that has none passes
 * the question on; a source that *fails* (a credential helper that crashes, hangs or prints
 * garbage, a malformed config file) fails the request with a `CredentialsError` instead of
 * silently falling back to a weaker credential or to anonymous access.
 *
 * 1. `credentialFunction`: the library hook (the seed library's `CredentialFunc`), asked per request.
 * 2. `static`: fixed credentials per `host` or `host/path`.
 * 3. `explicit`: OpenTofu-style `oci_credentials "host[/path]"` blocks, each with exactly one of
 *    `username` + `password`, `accessToken` (optionally with `refreshToken`, which is then unused),
 *    `refreshToken` (an identity token), or `helper` (`docker-credential-<helper>`).
 * 4. `defaultHelper`: OpenTofu's `oci_default_credentials { docker_credentials_helper }`, one
 *    helper asked about every registry the blocks above do not name.
 * 5. Ambient docker/podman configuration, unless `discoverAmbientCredentials` is `false`
 *    (OpenTofu's `discover_ambient_credentials = false`: explicit sources only):
 *    a. `DOCKER_AUTH_CONFIG` (a whole `config.json` in the environment),
 *    b. `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`,
 *    c. `$REGISTRY_AUTH_FILE`,
 *    d. `$XDG_RUNTIME_DIR/containers/auth.json`,
 *    e. `${XDG_CONFIG_HOME:-~/.config}/containers/auth.json`.
 *    Across these files the most specific entry wins: `auths["host/a/b"]` over `auths["host/a"]`
 *    over `auths["host"]` or `credHelpers["host"]` over `credsStore`; on a tie the file listed
 *    first wins, and within one file `credHelpers` wins over `auths`. In `auths`, `registrytoken`
 *    is sent as a bearer token, `identitytoken` is exchanged at the token endpoint as a refresh
 *    token, and `auth` (base64 `user:password`) or `username` + `password` is a password.
 * 6. Otherwise: anonymous access.
 *
 * Within `static` and `explicit`, and within the ambient files, a key `host/path` applies to the
 * repositories under `path`, and the longest matching key wins. Keys are normalised the same way
 * everywhere except `static` (whose keys are used as written): the scheme, trailing `/` and a
 * final `/v1` or `/v2` are dropped, the host is lowercased, and `docker.io`, `index.docker.io`,
 * `registry-1.docker.io` and the legacy `https://index.docker.io/v1/` all name Docker Hub.
 *
 * A credential helper's "credentials not found" is "nothing here" (the next source is asked); the
 * most specific ambient entry decides alone, so a helper there answering "not found" means
 * anonymous access. Helper answers are cached for 5 minutes, failures for 10 seconds, and one
 * process serves concurrent lookups (see `CredentialHelper`).
 *
 * Differences from OpenTofu: OpenTofu ranks explicit blocks and ambient entries together by
 * specificity; here explicit configuration always comes first. OpenTofu does not read
 * `DOCKER_CONFIG`, `REGISTRY_AUTH_FILE` or `DOCKER_AUTH_CONFIG` and ignores `identitytoken`;
 * here they are honoured, as docker and podman do. The legacy `~/.dockercfg` is not read.
 *
 * @since 0.1.0
 */
import type * as FileSystem from "@effect/platform/FileSystem"
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import type * as ConfigError from "effect/ConfigError"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type * as Redacted from "effect/Redacted"
import * as CredentialHelper from "./CredentialHelper.js"
import * as DockerConfig from "./DockerConfig.js"
import { type CredentialsError, InvalidConfig } from "./Errors.js"
import {
  canonicalHost,
  formatKey,
  globalSpecificity,
  helperServerUrl,
  isValidHelperName,
  parseKey,
  type RegistryKey,
  repositorySegments,
  specificity
} from "./internal/credentials/registryKey.js"

/**
 * - `Basic`: username and password (GHCR/PAT tokens work as passwords); sent as Basic to
 *   Basic-only registries and to token endpoints.
 * - `AccessToken`: a bearer token sent to the registry as is (docker `registrytoken`).
 * - `RefreshToken`: an OAuth2 refresh token (docker `identitytoken`), exchanged at the token
 *   endpoint with a POST `grant_type=refresh_token`.
 *
 * @since 0.1.0
 * @category models
 */
export type Credential =
  | { readonly _tag: "Basic"; readonly username: string; readonly password: Redacted.Redacted<string> }
  | { readonly _tag: "AccessToken"; readonly token: Redacted.Redacted<string> }
  | {
    readonly _tag: "RefreshToken"
    readonly token: Redacted.Redacted<string>
    readonly username?: string | undefined
  }

/**
 * @since 0.1.0
 * @category models
 */
export interface Service {
  /** `host` is `name[:port]` as written in the repository address; `repository` is the path. */
  readonly get: (host: string, repository: string) => Effect.Effect<Option.Option<Credential>, CredentialsError>
}

/**
 * @since 0.1.0
 * @category tags
 */
export class Credentials extends Context.Tag("oras-state/Credentials")<Credentials, Service>() {}

/**
 * Anonymous access everywhere.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerNone: Layer.Layer<Credentials> = Layer.succeed(Credentials, {
  get: () => Effect.succeedNone
})

/**
 * A credential function, the library-level hook (the seed library's `CredentialFunc`).
 *
 * @since 0.1.0
 * @category layers
 */
export const layerFunction = (
  f: (host: string, repository: string) => Effect.Effect<Option.Option<Credential>, CredentialsError>
): Layer.Layer<Credentials> => Layer.succeed(Credentials, { get: f })

/**
 * Fixed credentials per host (`host` or `host/path`; the longest matching key wins).
 *
 * @since 0.1.0
 * @category layers
 */
export const layerStatic = (entries: Readonly<Record<string, Credential>>): Layer.Layer<Credentials> =>
  layerFunction((host, repository) => Effect.succeed(matchMostSpecific(entries, host, repository)))

/**
 * The entry whose key is `host` or `host/<path prefix of repository>` with the most path segments.
 *
 * @since 0.1.0
 * @category utils
 */
export const matchMostSpecific = <A>(
  entries: Readonly<Record<string, A>>,
  host: string,
  repository: string
): Option.Option<A> => {
  const segments = repository.split("/").filter((s) => s.length > 0)
  for (let n = segments.length; n >= 0; n--) {
    const key = n === 0 ? host : `${host}/${segments.slice(0, n).join("/")}`
    if (Object.prototype.hasOwnProperty.call(entries, key)) return Option.some(entries[key] as A)
  }
  return Option.none()
}

/**
 * An OpenTofu-style `oci_credentials "host[/path]"` block. Exactly one kind must be given:
 * `username` + `password`; `accessToken` (a bearer token; a `refreshToken` next to it is unused);
 * `refreshToken` (an identity token, optionally with `username`); or `helper`
 * (`docker-credential-<helper>`, asked with the bare host as server URL).
 *
 * @since 0.1.0
 * @category models
 */
export interface ExplicitCredential {
  readonly username?: string | undefined
  readonly password?: Redacted.Redacted<string> | undefined
  readonly accessToken?: Redacted.Redacted<string> | undefined
  readonly refreshToken?: Redacted.Redacted<string> | undefined
  /** The `docker-credential-<helper>` suffix (OpenTofu `docker_credentials_helper`). */
  readonly helper?: string | undefined
}

/**
 * @since 0.1.0
 * @category models
 */
export interface ExplicitOptions {
  /** OpenTofu `oci_default_credentials { docker_credentials_helper }`: asked for every other registry. */
  readonly defaultHelper?: string | undefined
}

type ExplicitSource =
  | { readonly _tag: "Credential"; readonly credential: Credential }
  | { readonly _tag: "Helper"; readonly helper: string }

const explicitSource = (label: string, block: ExplicitCredential): ExplicitSource | InvalidConfig => {
  const invalid = (reason: string) => new InvalidConfig({ key: `oci_credentials ${JSON.stringify(label)}`, reason })
  const kinds = [
    block.password !== undefined || (block.username !== undefined && block.refreshToken === undefined),
    block.accessToken !== undefined || block.refreshToken !== undefined,
    block.helper !== undefined
  ].filter(Boolean).length
  if (kinds !== 1) {
    return invalid("needs exactly one of username + password, accessToken / refreshToken, or helper")
  }
  if (block.helper !== undefined) {
    return isValidHelperName(block.helper)
      ? { _tag: "Helper", helper: block.helper }
      : invalid("helper must be a plain name ([A-Za-z0-9._-]), the part after docker-credential-")
  }
  if (block.accessToken !== undefined) {
    return { _tag: "Credential", credential: { _tag: "AccessToken", token: block.accessToken } }
  }
  if (block.refreshToken !== undefined) {
    return {
      _tag: "Credential",
      credential: { _tag: "RefreshToken", token: block.refreshToken, username: block.username }
    }
  }
  if (block.username === undefined || block.username === "" || block.password === undefined) {
    return invalid("username and password must both be given")
  }
  return { _tag: "Credential", credential: { _tag: "Basic", username: block.username, password: block.password } }
}

/**
 * The explicit source (OpenTofu `oci_credentials` blocks and `oci_default_credentials`).
 * Fails with `InvalidConfig` (naming the block, never a secret) when a block is not usable.
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeExplicit = (
  blocks: Readonly<Record<string, ExplicitCredential>>,
  options: ExplicitOptions = {}
): Effect.Effect<Service, InvalidConfig, CredentialHelper.CredentialHelpers> =>
  Effect.gen(function*() {
    const helpers = yield* CredentialHelper.CredentialHelpers
    const entries: Array<{ readonly key: RegistryKey; readonly source: ExplicitSource }> = []
    const seen = new Set<string>()
    for (const [label, block] of Object.entries(blocks)) {
      const key = parseKey(label)
      if (key === undefined) {
        return yield* new InvalidConfig({ key: `oci_credentials ${JSON.stringify(label)}`, reason: "not a host[/path]" })
      }
      const canonical = formatKey(key)
      if (seen.has(canonical)) {
        return yield* new InvalidConfig({
          key: `oci_credentials ${JSON.stringify(label)}`,
          reason: `names the same registry path as another block (${canonical})`
        })
      }
      seen.add(canonical)
      const source = explicitSource(label, block)
      if (source instanceof InvalidConfig) return yield* source
      entries.push({ key, source })
    }
    const defaultHelper = options.defaultHelper
    if (defaultHelper !== undefined && !isValidHelperName(defaultHelper)) {
      return yield* new InvalidConfig({
        key: "oci_default_credentials.docker_credentials_helper",
        value: defaultHelper,
        reason: "must be a plain name ([A-Za-z0-9._-]), the part after docker-credential-"
      })
    }
    const get: Service["get"] = (host, repository) =>
      Effect.suspend(() => {
        const h = canonicalHost(host)
        const segments = repositorySegments(repository)
        let best: { readonly score: number; readonly source: ExplicitSource } | undefined
        for (const entry of entries) {
          const score = specificity(entry.key, h, segments)
          if (score !== undefined && (best === undefined || score > best.score)) best = { score, source: entry.source }
        }
        if (best === undefined && defaultHelper !== undefined) {
          best = { score: globalSpecificity, source: { _tag: "Helper", helper: defaultHelper } }
        }
        if (best === undefined) return Effect.succeedNone
        const source = best.source
        return source._tag === "Credential"
          ? Effect.succeed(Option.some(source.credential))
          : helpers.get(source.helper, helperServerUrl(host))
      })
    return { get }
  })

/**
 * OpenTofu-style explicit credentials only (`discover_ambient_credentials = false`).
 *
 * @since 0.1.0
 * @category layers
 */
export const layerExplicit = (
  blocks: Readonly<Record<string, ExplicitCredential>>,
  options: ExplicitOptions = {}
): Layer.Layer<Credentials, InvalidConfig, CredentialHelper.CredentialHelpers> =>
  Layer.effect(Credentials, makeExplicit(blocks, options))

/**
 * Ambient docker `config.json` / containers `auth.json` credentials (see `DockerConfig`).
 *
 * @since 0.1.0
 * @category layers
 */
export const layerDockerConfig = (
  options: DockerConfig.Options = {}
): Layer.Layer<
  Credentials,
  ConfigError.ConfigError,
  FileSystem.FileSystem | CredentialHelper.CredentialHelpers
> => Layer.effect(Credentials, DockerConfig.make(options))

/**
 * Ask `sources` in order: the first `Some` wins, `None` passes the question on, and a failure
 * fails the lookup (a broken source never silently yields to a weaker one). Sub-layers share the
 * memo map of the layer being built, so a `CredentialHelpers` layer provided to several of them
 * (or to the chain) is built once and its cache is shared.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerChain = <const Sources extends ReadonlyArray<Layer.Layer<Credentials, any, any>>>(
  sources: Sources
): Layer.Layer<Credentials, Layer.Layer.Error<Sources[number]>, Layer.Layer.Context<Sources[number]>> =>
  Layer.scoped(
    Credentials,
    Effect.gen(function*() {
      const memoMap = yield* Layer.CurrentMemoMap
      const scope = yield* Effect.scope
      const services: Array<Service> = []
      for (const source of sources) {
        const context = yield* Layer.buildWithMemoMap(source, memoMap, scope)
        services.push(Context.get(context, Credentials))
      }
      return chain(services)
    })
  ) as Layer.Layer<Credentials, Layer.Layer.Error<Sources[number]>, Layer.Layer.Context<Sources[number]>>

/**
 * The service that asks `services` in order (see `layerChain`).
 *
 * @since 0.1.0
 * @category constructors
 */
export const chain = (services: ReadonlyArray<Service>): Service => ({
  get: (host, repository) => {
    const step = (i: number): Effect.Effect<Option.Option<Credential>, CredentialsError> =>
      i >= services.length
        ? Effect.succeedNone
        : Effect.flatMap(services[i]!.get(host, repository), (found) =>
          Option.isSome(found) ? Effect.succeed(found) : step(i + 1))
    return step(0)
  }
})

/**
 * Every source of the documented precedence (see the module header).
 *
 * @since 0.1.0
 * @category models
 */
export interface Sources {
  readonly credentialFunction?:
    | ((host: string, repository: string) => Effect.Effect<Option.Option<Credential>, CredentialsError>)
    | undefined
  readonly static?: Readonly<Record<string, Credential>> | undefined
  /** OpenTofu `oci_credentials "host[/path]"` blocks. */
  readonly explicit?: Readonly<Record<string, ExplicitCredential>> | undefined
  /** OpenTofu `oci_default_credentials { docker_credentials_helper }`. */
  readonly defaultHelper?: string | undefined
  /** OpenTofu `discover_ambient_credentials` (default `true`). */
  readonly discoverAmbientCredentials?: boolean | undefined
  /** Where and how to read the ambient files. */
  readonly dockerConfig?: DockerConfig.Options | undefined
}

/**
 * All sources in the documented precedence. Needs a `FileSystem` and `CredentialHelpers`
 * (`layerNode` provides Node's).
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  sources: Sources = {}
): Layer.Layer<
  Credentials,
  InvalidConfig | ConfigError.ConfigError,
  FileSystem.FileSystem | CredentialHelper.CredentialHelpers
> => {
  const layers: Array<
    Layer.Layer<
      Credentials,
      InvalidConfig | ConfigError.ConfigError,
      FileSystem.FileSystem | CredentialHelper.CredentialHelpers
    >
  > = []
  if (sources.credentialFunction !== undefined) layers.push(layerFunction(sources.credentialFunction))
  if (sources.static !== undefined) layers.push(layerStatic(sources.static))
  if (sources.explicit !== undefined || sources.defaultHelper !== undefined) {
    layers.push(layerExplicit(sources.explicit ?? {}, { defaultHelper: sources.defaultHelper }))
  }
  if (sources.discoverAmbientCredentials !== false) layers.push(layerDockerConfig(sources.dockerConfig))
  return layerChain(layers)
}

/**
 * `layer` on Node: the file system and process spawning of `@effect/platform-node`, with one
 * credential-helper cache (`helpers` tunes its timeout and time-to-live).
 *
 * @since 0.1.0
 * @category layers
 */
export const layerNode = (
  sources: Sources & { readonly helpers?: CredentialHelper.Options | undefined } = {}
): Layer.Layer<Credentials, InvalidConfig | ConfigError.ConfigError> =>
  layer(sources).pipe(
    Layer.provide(CredentialHelper.layerNode(sources.helpers)),
    Layer.provide(NodeFileSystem.layer)
  )
