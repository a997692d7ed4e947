/**
 * `Credentials`: for a registry host (and repository path), the credential to use, if any.
 * Every secret is `Redacted`; `Redacted.value` is called only where a header is built.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type * as Redacted from "effect/Redacted"
import type { CredentialsError } from "./Errors.js"

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
