/**
 * Registry authentication: learns from `WWW-Authenticate` challenges whether a registry uses
 * Bearer tokens or Basic, fetches tokens (GET + Basic, anonymous GET, or POST `refresh_token`),
 * and caches them per realm, service and scope set until they expire (on `Clock`), so N requests of
 * one scope cost one token fetch. Scopes are the narrowest an operation needs: `pull` to read,
 * `pull,push` to write, `delete` to delete.
 *
 * Credentials are read from the `Credentials` service per request and only turned into header
 * text here; they are never attached to a URL whose origin is not the registry's (the transport
 * enforces that for redirects, upload Locations and Links, and ignores challenges from other
 * origins).
 *
 * @internal
 */
import * as Cache from "effect/Cache"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import type { Credential } from "../../Credentials.js"
import type * as Credentials from "../../Credentials.js"
import { type CredentialsError, RegistryError, type TransientRegistry, Unauthorized } from "../../Errors.js"
import { type Challenge, challengeScopes, parseChallenges } from "./challenge.js"

/** @internal */
export type Action = "pull" | "push" | "delete"

/** @internal */
export interface AuthScope {
  readonly repository: string
  readonly actions: ReadonlyArray<Action>
}

/** `repository:<name>:<actions sorted>`; registries list actions in random order. @internal */
export const scopeString = (scope: AuthScope): string =>
  `repository:${scope.repository}:${[...scope.actions].sort().join(",")}`

const normalizeScope = (scope: string): string => {
  const first = scope.indexOf(":")
  const last = scope.lastIndexOf(":")
  if (first < 0 || last === first) return scope
  const actions = scope.slice(last + 1).split(",").filter((a) => a.length > 0).sort()
  return `${scope.slice(0, last)}:${actions.join(",")}`
}

/** @internal */
export interface TokenRequest {
  readonly realm: string
  readonly service: string | undefined
  readonly scopes: ReadonlyArray<string>
  readonly repository: string
}

/** @internal */
export interface TokenResponse {
  readonly token: Redacted.Redacted<string>
  readonly expiresInSeconds: number
}

type AuthFailure = TransientRegistry | RegistryError | Unauthorized | CredentialsError

type HostMode =
  | { readonly _tag: "Unknown" }
  | { readonly _tag: "Basic" }
  | { readonly _tag: "Bearer"; readonly realm: string; readonly service: string | undefined }

/** @internal */
export interface Authenticator {
  /** The Authorization header to send up front, from what is already known about the registry. */
  readonly headerFor: (scope: AuthScope) => Effect.Effect<Option.Option<Redacted.Redacted<string>>, AuthFailure>
  /**
   * After a 401 carrying `challenge`: the header to retry with once, or `None` when there is
   * nothing better to try (the caller then reports `Unauthorized`).
   */
  readonly afterChallenge: (
    scope: AuthScope,
    challenge: string | undefined,
    previous: Option.Option<Redacted.Redacted<string>>
  ) => Effect.Effect<Option.Option<Redacted.Redacted<string>>, AuthFailure>
}

/** @internal */
export interface AuthenticatorOptions {
  readonly host: string
  readonly credentials: Credentials.Service
  /** Fetches a token from the realm (rate-limited, retried, timed out by the caller). */
  readonly fetchToken: (
    request: TokenRequest,
    credential: Option.Option<Credential>
  ) => Effect.Effect<TokenResponse, AuthFailure>
}

const basicHeader = (username: string, password: Redacted.Redacted<string>): Redacted.Redacted<string> =>
  Redacted.make(`Basic ${Buffer.from(`${username}:${Redacted.value(password)}`, "utf8").toString("base64")}`)

const bearerHeader = (token: Redacted.Redacted<string>): Redacted.Redacted<string> =>
  Redacted.make(`Bearer ${Redacted.value(token)}`)

/** Tokens are reused until shortly before they expire. @internal */
export const tokenTimeToLive = (expiresInSeconds: number): Duration.Duration =>
  Duration.seconds(Math.max(0, expiresInSeconds - Math.min(30, expiresInSeconds * 0.1)))

/** @internal */
export const makeAuthenticator = (options: AuthenticatorOptions) =>
  Effect.gen(function*() {
    let mode: HostMode = { _tag: "Unknown" }

    const credentialFor = (repository: string) => options.credentials.get(options.host, repository)

    // Keyed by a canonical JSON of the token request, so equal requests share one entry and one
    // in-flight fetch.
    const tokens = yield* Cache.makeWith({
      capacity: 1024,
      lookup: (key: string) => {
        const request = JSON.parse(key) as TokenRequest
        return Effect.flatMap(credentialFor(request.repository), (credential) =>
          options.fetchToken(request, credential))
      },
      timeToLive: (exit: Exit.Exit<TokenResponse, AuthFailure>) =>
        Exit.isSuccess(exit) ? tokenTimeToLive(exit.value.expiresInSeconds) : Duration.zero
    })

    const tokenKey = (realm: string, service: string | undefined, scopes: ReadonlyArray<string>, repository: string) =>
      JSON.stringify({ realm, service, scopes: [...new Set(scopes.map(normalizeScope))].sort(), repository })

    const bearerFor = (
      bearer: { readonly realm: string; readonly service: string | undefined },
      scopes: ReadonlyArray<string>,
      repository: string,
      refresh: boolean
    ) =>
      Effect.gen(function*() {
        const credential = yield* credentialFor(repository)
        // A registry token (docker `registrytoken`) is sent as is; there is nothing to exchange.
        if (Option.isSome(credential) && credential.value._tag === "AccessToken") {
          return Option.some(bearerHeader(credential.value.token))
        }
        const key = tokenKey(bearer.realm, bearer.service, scopes, repository)
        if (refresh) yield* tokens.invalidate(key)
        const token = yield* tokens.get(key)
        return Option.some(bearerHeader(token.token))
      })

    const headerFor: Authenticator["headerFor"] = (scope) =>
      Effect.suspend(() => {
        const current = mode
        switch (current._tag) {
          case "Unknown":
            return Effect.succeedNone
          case "Basic":
            return Effect.map(credentialFor(scope.repository), (credential) =>
              Option.isSome(credential) && credential.value._tag === "Basic"
                ? Option.some(basicHeader(credential.value.username, credential.value.password))
                : Option.none())
          case "Bearer":
            return bearerFor(current, [scopeString(scope)], scope.repository, false)
        }
      })

    const afterChallenge: Authenticator["afterChallenge"] = (scope, header, previous) =>
      Effect.gen(function*() {
        const challenges = header === undefined ? [] : parseChallenges(header)
        const bearer = challenges.find((c) => c.scheme === "bearer" && c.params["realm"] !== undefined)
        if (bearer !== undefined) {
          mode = { _tag: "Bearer", realm: bearer.params["realm"]!, service: bearer.params["service"] }
          const scopes = mergeScopes(scope, bearer)
          // A token we already sent and that was refused is not worth asking the cache for again.
          const next = yield* bearerFor(mode, scopes, scope.repository, Option.isSome(previous))
          return sameHeader(next, previous) ? Option.none() : next
        }
        const basic = challenges.find((c) => c.scheme === "basic")
        if (basic !== undefined) {
          mode = { _tag: "Basic" }
          const credential = yield* credentialFor(scope.repository)
          if (Option.isNone(credential) || credential.value._tag !== "Basic") return Option.none()
          const next = Option.some(basicHeader(credential.value.username, credential.value.password))
          return sameHeader(next, previous) ? Option.none() : next
        }
        return Option.none()
      })

    return { headerFor, afterChallenge } satisfies Authenticator
  })

// Our scope plus whatever the challenge names (the server knows best what it needs).
const mergeScopes = (scope: AuthScope, challenge: Challenge): ReadonlyArray<string> =>
  [...new Set([scopeString(scope), ...challengeScopes(challenge).map(normalizeScope)])]

const sameHeader = (
  a: Option.Option<Redacted.Redacted<string>>,
  b: Option.Option<Redacted.Redacted<string>>
): boolean => Option.isSome(a) && Option.isSome(b) && Redacted.value(a.value) === Redacted.value(b.value)

/** Parse a token endpoint's JSON answer. @internal */
export const parseTokenResponse = (text: string, operation: string): Effect.Effect<TokenResponse, RegistryError> =>
  Effect.suspend(() => {
    let json: unknown
    try {
      json = JSON.parse(text)
    } catch {
      return Effect.fail(new RegistryError({ operation, reason: "token endpoint answered with invalid JSON" }))
    }
    const body = json as { token?: unknown; access_token?: unknown; expires_in?: unknown } | null
    const token = typeof body?.token === "string" && body.token.length > 0
      ? body.token
      : typeof body?.access_token === "string" && body.access_token.length > 0
      ? body.access_token
      : undefined
    if (token === undefined) {
      return Effect.fail(new RegistryError({ operation, reason: "token endpoint answered without a token" }))
    }
    // The token spec: assume 60 seconds when absent.
    const expiresIn = typeof body?.expires_in === "number" && Number.isFinite(body.expires_in) && body.expires_in > 0
      ? Math.min(body.expires_in, 24 * 3600)
      : 60
    return Effect.succeed({ token: Redacted.make(token), expiresInSeconds: expiresIn })
  })

/** @internal */
export const unauthorizedTokenEndpoint = (operation: string, status: number) =>
  new Unauthorized({
    operation,
    status,
    reason: "the token endpoint refused the credentials"
  })
