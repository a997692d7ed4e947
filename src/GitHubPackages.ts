/**
 * `GitHubPackages`: deletes a container package version through the GitHub REST API, for
 * ghcr.io, whose OCI API answers every DELETE with 405.
 *
 * `deleteVersion("owner/pkg/path", tag, digest)`:
 * 1. lists the versions of package `pkg/path` (URL-encoded as one path segment, `pkg%2Fpath`) at
 *    `GET {api}/orgs/{owner}/packages/container/{pkg}/versions?per_page=100&page=N`, and, if the
 *    organisation endpoint answers 404, at `/users/{owner}/…`; pages are read until one is empty
 *    or short, at most `maxPages` (default 100, i.e. 10,000 versions);
 * 2. picks the version whose `name` is the manifest digest **and** whose
 *    `metadata.container.tags` contain the tag — a version that carries the tag but another digest
 *    is never deleted (the tag moved; deleting it would destroy a newer state);
 * 3. sends `DELETE …/versions/{id}` and expects 204.
 * It answers `true` when the version was deleted and `false` when no such version exists (any
 * 404). Deleting a package version deletes every tag on it.
 *
 * Requests carry `Accept: application/vnd.github+json`, `X-GitHub-Api-Version: 2022-11-28` and
 * `Authorization: Bearer <token>`, the token being the `Credentials` entry for `ghcr.io`: an
 * `AccessToken`, else a `Basic` password (a GitHub token is what `docker login ghcr.io` stores as
 * password). Failures: 401/403 → `Unauthorized` naming the scopes needed (`read:packages` to list,
 * `delete:packages` to delete), never the token; 429, 5xx, a 403 that is a rate limit, timeouts
 * and connection failures → `TransientRegistry` (retried per `Retry`); anything else →
 * `RegistryError`; no credential → `CredentialsError`.
 *
 * @since 0.1.0
 */
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import type * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type * as Redacted from "effect/Redacted"
import { Credentials } from "./Credentials.js"
import type * as Digest from "./Digest.js"
import {
  CredentialsError,
  InvalidConfig,
  type InvalidReference,
  RegistryError,
  TransientRegistry,
  Unauthorized
} from "./Errors.js"
import * as Reference from "./internal/reference.js"
import * as Retry from "./Retry.js"
import { withSafeTracing } from "./internal/telemetry.js"

/**
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** GitHub REST API root (default `https://api.github.com`; GHES: `https://HOST/api/v3`). */
  readonly apiBaseUrl?: string | undefined
  /** The registry whose credential is used (default `ghcr.io`). */
  readonly registryHost?: string | undefined
  /** Upper bound on version pages read per owner kind (default 100). */
  readonly maxPages?: number | undefined
  /** Versions per page, at most 100 (default 100). */
  readonly perPage?: number | undefined
  readonly userAgent?: string | undefined
  /** Time allowed per request (default 30 seconds). */
  readonly requestTimeout?: Duration.DurationInput | undefined
  readonly retry?: Retry.Options | undefined
  readonly transformClient?: ((client: HttpClient.HttpClient) => HttpClient.HttpClient) | undefined
}

/**
 * @since 0.1.0
 * @category errors
 */
export type Failure = Unauthorized | RegistryError | TransientRegistry | CredentialsError | InvalidReference

/**
 * @since 0.1.0
 * @category models
 */
export interface Service {
  /**
   * Delete the package version of `repository` (`owner/pkg[/path]` on ghcr.io) whose digest is
   * `digest` and which carries `tag`. `false` when there is no such version.
   */
  readonly deleteVersion: (repository: string, tag: string, digest: Digest.Digest) => Effect.Effect<boolean, Failure>
}

/**
 * @since 0.1.0
 * @category tags
 */
export class GitHubPackages extends Context.Tag("oras-state/GitHubPackages")<GitHubPackages, Service>() {}

/**
 * @since 0.1.0
 * @category constants
 */
export const defaults = {
  apiBaseUrl: "https://api.github.com",
  registryHost: "ghcr.io",
  maxPages: 100,
  perPage: 100,
  requestTimeout: Duration.seconds(30)
} as const

interface Version {
  readonly id: number
  readonly name: string
  readonly tags: ReadonlyArray<string>
}

/** One page of `GET …/versions`: `undefined` when it is not a JSON array. Malformed items are skipped. */
const parseVersions = (json: unknown): { readonly count: number; readonly versions: Array<Version> } | undefined => {
  if (!Array.isArray(json)) return undefined
  const versions: Array<Version> = []
  for (const item of json as Array<unknown>) {
    if (typeof item !== "object" || item === null) continue
    const v = item as { id?: unknown; name?: unknown; metadata?: { container?: { tags?: unknown } } }
    const tags = v.metadata?.container?.tags
    if (typeof v.id !== "number" || !Number.isSafeInteger(v.id) || typeof v.name !== "string") continue
    versions.push({
      id: v.id,
      name: v.name,
      tags: Array.isArray(tags) ? tags.filter((t): t is string => typeof t === "string") : []
    })
  }
  return { count: json.length, versions }
}

type OwnerKind = "orgs" | "users"

/**
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  options: Options = {}
): Effect.Effect<Service, InvalidConfig, HttpClient.HttpClient | Credentials> =>
  Effect.gen(function*() {
    const apiBase = yield* parseApiBase(options.apiBaseUrl ?? defaults.apiBaseUrl)
    const credentials = yield* Credentials
    const baseClient = yield* HttpClient.HttpClient
    // The platform's own HTTP span would record full URLs and response headers: use ours.
    const client = withSafeTracing(options.transformClient === undefined ? baseClient : options.transformClient(baseClient))
    const registryHost = options.registryHost ?? defaults.registryHost
    const maxPages = Math.max(1, Math.floor(options.maxPages ?? defaults.maxPages))
    const perPage = Math.min(100, Math.max(1, Math.floor(options.perPage ?? defaults.perPage)))
    const userAgent = options.userAgent ?? "oras-state/0.1"
    const requestTimeout = Duration.decode(options.requestTimeout ?? defaults.requestTimeout)
    const policy = Retry.schedule(options.retry)

    const tokenFor = (repository: string) =>
      Effect.flatMap(credentials.get(registryHost, repository), (found) => {
        const fail = (reason: string) =>
          Effect.fail(new CredentialsError({ host: registryHost, source: "GitHubPackages", reason }))
        if (Option.isNone(found)) {
          return fail(
            `no credentials for ${registryHost}: deleting package versions needs a GitHub token with read:packages and delete:packages`
          )
        }
        const credential = found.value
        switch (credential._tag) {
          case "AccessToken":
            return Effect.succeed(credential.token)
          case "Basic":
            return Effect.succeed(credential.password)
          case "RefreshToken":
            return fail("an identity (refresh) token cannot be used with the GitHub API; configure a GitHub token")
        }
      })

    // One request: headers, timeout, transport failures and 429/5xx/rate-limit 403 as transient.
    const send = (operation: string, request: HttpClientRequest.HttpClientRequest, token: Redacted.Redacted<string>) =>
      client.execute(
        request.pipe(
          HttpClientRequest.setHeaders({
            accept: "application/vnd.github+json",
            "x-github-api-version": "2022-11-28",
            "user-agent": userAgent
          }),
          HttpClientRequest.bearerToken(token)
        )
      ).pipe(
        Effect.timeoutFail({
          duration: requestTimeout,
          onTimeout: () =>
            new TransientRegistry({ operation, reason: `no answer within ${Duration.format(requestTimeout)}` })
        }),
        Effect.catchTags({
          RequestError: (e) => Effect.fail(new TransientRegistry({ operation, reason: `request failed (${e.reason})` })),
          ResponseError: (e) => Effect.fail(new TransientRegistry({ operation, reason: `response failed (${e.reason})` }))
        }),
        Effect.tap((response) => transientStatus(operation, response))
      )

    const readJson = (
      operation: string,
      response: HttpClientResponse.HttpClientResponse
    ): Effect.Effect<unknown, RegistryError | TransientRegistry> =>
      response.json.pipe(
        Effect.catchTag("ResponseError", (e): Effect.Effect<never, RegistryError | TransientRegistry> =>
          e.reason === "Decode"
            ? Effect.fail(new RegistryError({ operation, status: response.status, reason: "the GitHub API answered with invalid JSON" }))
            : Effect.fail(new TransientRegistry({ operation, reason: "the response body was cut off" })))
      )

    const versionsUrl = (kind: OwnerKind, owner: string, pkg: string) =>
      `${apiBase}/${kind}/${encodeURIComponent(owner)}/packages/container/${encodeURIComponent(pkg)}/versions`

    /** The matching version id, `None` if absent, `"NoOwner"` if this owner kind has no such package. */
    const find = (
      kind: OwnerKind,
      owner: string,
      pkg: string,
      tag: string,
      digest: string,
      token: Redacted.Redacted<string>
    ) =>
      Effect.gen(function*() {
        const operation = "listPackageVersions"
        for (let page = 1; page <= maxPages; page++) {
          const request = HttpClientRequest.get(versionsUrl(kind, owner, pkg)).pipe(
            HttpClientRequest.setUrlParams({ per_page: String(perPage), page: String(page) })
          )
          const result = yield* Retry.retryTransient(
            Effect.gen(function*() {
              const response = yield* send(operation, request, token)
              if (response.status === 404) return "NoOwner" as const
              if (response.status === 401 || response.status === 403) {
                return yield* scopeError(operation, response, "read:packages")
              }
              if (response.status !== 200) return yield* unexpected(operation, response.status)
              const parsed = parseVersions(yield* readJson(operation, response))
              if (parsed === undefined) {
                return yield* new RegistryError({
                  operation,
                  status: 200,
                  reason: "the GitHub API answered with something other than a list of versions"
                })
              }
              return parsed
            }),
            policy
          )
          if (result === "NoOwner") return "NoOwner" as const
          const match = result.versions.find((v) => v.name === digest && v.tags.includes(tag))
          if (match !== undefined) return Option.some(match.id)
          if (result.count < perPage) return Option.none<number>()
        }
        return yield* new RegistryError({
          operation,
          reason: `more than ${maxPages} pages of package versions; the version was not found within them`
        })
      })

    const remove = (kind: OwnerKind, owner: string, pkg: string, id: number, token: Redacted.Redacted<string>) =>
      Retry.retryTransient(
        Effect.gen(function*() {
          const operation = "deletePackageVersion"
          const response = yield* send(operation, HttpClientRequest.del(`${versionsUrl(kind, owner, pkg)}/${id}`), token)
          if (response.status === 204) return true
          if (response.status === 404) return false
          if (response.status === 401 || response.status === 403) {
            return yield* scopeError(operation, response, "delete:packages")
          }
          return yield* unexpected(operation, response.status)
        }),
        policy
      )

    const deleteVersion: Service["deleteVersion"] = (repository, tag, digest) =>
      Effect.gen(function*() {
        yield* Reference.validateRepository(repository)
        yield* Reference.validateTag(tag)
        yield* Reference.validateDigest(digest)
        const slash = repository.indexOf("/")
        if (slash < 0) {
          return yield* new RegistryError({
            operation: "deletePackageVersion",
            reason: "the repository must be owner/package[/path] to name a GitHub package"
          })
        }
        const owner = repository.slice(0, slash)
        const pkg = repository.slice(slash + 1)
        const token = yield* tokenFor(repository)
        for (const kind of ["orgs", "users"] as const) {
          const found = yield* find(kind, owner, pkg, tag, digest, token)
          if (found === "NoOwner") continue
          if (Option.isNone(found)) return false
          return yield* remove(kind, owner, pkg, found.value, token)
        }
        return false
      }).pipe(
        Effect.withSpan("GitHubPackages.deleteVersion", {
          kind: "client",
          attributes: { "oci.repository": repository, "oci.reference": tag, "oci.digest": digest }
        })
      )

    return GitHubPackages.of({ deleteVersion })
  })

/**
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  options: Options = {}
): Layer.Layer<GitHubPackages, InvalidConfig, HttpClient.HttpClient | Credentials> =>
  Layer.effect(GitHubPackages, make(options))

const parseApiBase = (raw: string): Effect.Effect<string, InvalidConfig> =>
  Effect.suspend(() => {
    const invalid = (reason: string) => Effect.fail(new InvalidConfig({ key: "apiBaseUrl", value: raw, reason }))
    let url: URL
    try {
      url = new URL(raw)
    } catch {
      return invalid("not a URL")
    }
    if (url.protocol !== "https:" && url.protocol !== "http:") return invalid("must be an http(s) URL")
    if (url.username !== "" || url.password !== "" || url.search !== "" || url.hash !== "") {
      return invalid("must not carry credentials, a query or a fragment")
    }
    return Effect.succeed(`${url.origin}${url.pathname.replace(/\/+$/, "")}`)
  })

const isRateLimited = (response: HttpClientResponse.HttpClientResponse): boolean =>
  response.status === 403 &&
  (response.headers["x-ratelimit-remaining"] === "0" || response.headers["retry-after"] !== undefined)

// 429, 5xx and rate-limit 403s are transient; GitHub says when to come back.
const transientStatus = (operation: string, response: HttpClientResponse.HttpClientResponse) =>
  Effect.gen(function*() {
    if (response.status !== 429 && response.status < 500 && !isRateLimited(response)) return
    const now = yield* Clock.currentTimeMillis
    const retryAfter = Retry.parseRetryAfter(response.headers["retry-after"], now) ?? resetDelay(response, now)
    return yield* new TransientRegistry({
      operation,
      status: response.status,
      reason: response.status >= 500 ? "GitHub API server error" : "GitHub API rate limit",
      ...(retryAfter === undefined ? {} : { retryAfterMillis: retryAfter })
    })
  })

const resetDelay = (response: HttpClientResponse.HttpClientResponse, now: number): number | undefined => {
  const reset = Number(response.headers["x-ratelimit-reset"])
  if (!Number.isFinite(reset) || reset <= 0) return undefined
  return Math.max(0, Math.min(reset * 1000 - now, 3600 * 1000))
}

const scopeError = (
  operation: string,
  response: HttpClientResponse.HttpClientResponse,
  needed: "read:packages" | "delete:packages"
) => {
  // Scope names only; GitHub lists the token's scopes in X-OAuth-Scopes (classic tokens).
  const has = response.headers["x-oauth-scopes"]
  const scopes = has === undefined ? "" : `; the token has: ${has.trim() === "" ? "(no scopes)" : has.trim()}`
  const what = needed === "delete:packages" ? "delete the package version" : "list the package versions"
  const reason = response.status === 401
    ? `GitHub did not accept the token (HTTP 401); a token with read:packages and delete:packages is needed${scopes}`
    : `GitHub refused to ${what} (HTTP 403): the token needs the ${needed} scope${
      needed === "delete:packages" ? " (and admin access to the package)" : " (and delete:packages to delete)"
    }${scopes}`
  return Effect.fail(new Unauthorized({ operation, status: response.status, code: "missing_scope", reason }))
}

const unexpected = (operation: string, status: number) =>
  Effect.fail(new RegistryError({ operation, status, reason: `unexpected answer from the GitHub API` }))
