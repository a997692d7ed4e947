/**
 * `HttpRegistry`: the `Registry` service over the OCI Distribution API, on `@effect/platform`'s
 * `HttpClient`.
 *
 * - Manifests: GET/HEAD by tag or digest with the full Accept list (distribution 2.8 hides OCI
 *   manifests otherwise); bytes checked against the requested digest and `Docker-Content-Digest`;
 *   reads capped at 4 MiB. PUT with `Content-Type` = media type, the returned digest checked.
 * - Blobs: HEAD; GET verified (sha256 and size) before anything is released — `getBlobBytes`
 *   reads into one buffer of the declared size, hashing as the body arrives (retried like any
 *   idempotent read when cut off); `getBlob` emits a blob up to 8 MiB as one chunk that way and
 *   streams larger ones, with the verdict before the last chunk — redirects followed by hand with
 *   `Authorization` dropped off-origin;
 *   monolithic upload (POST, then PUT to the `Location` — absolute or relative, with its own query
 *   string — plus `&digest=`, as `application/octet-stream` with an explicit length; a `Location`
 *   on another origin gets no credentials).
 * - Tags: a lazy Stream following `n`/`Link`, tolerating registries that ignore `n` (one page, no
 *   Link), protected against Link loops and pages that repeat; a `Link` to another origin is
 *   refused (`RegistryError`), never followed.
 * - DELETE by digest, and by tag where the registry supports it; 405 and "tag delete unsupported"
 *   are `Unsupported`.
 * - Auth: see `internal/http/auth.ts`. Rate limit: every request, token fetches included.
 * - Retry (`Retry.schedule`): only idempotent requests — reads, blob uploads, manifest PUT by
 *   digest, DELETE by digest. A manifest PUT to a tag is sent once; a caller that loses its
 *   response must observe the tag, not re-send.
 * - Timeouts: `requestTimeout` on each response head, `idleTimeout` on each pause of a body. With
 *   `layerNode` the undici dispatcher enforces both natively (one timer per request); over any
 *   other `HttpClient` they are Effect timers. `layerNode` also keeps connections alive after HEAD
 *   requests, which undici closes by default.
 * - Clients: `layer` runs on any `HttpClient`. `layerNode` hands its requests straight to its
 *   undici dispatcher (`internal/http/nativeExchange.ts`: the platform client's per-request
 *   machinery cost as much as a loopback request itself), unless `transformClient` is given, in
 *   which case the transformed platform client carries them. Everything above the exchange —
 *   auth, redirects, retries, spans, error mapping — is the same on both paths.
 *
 * Transport security: `https` by default; plain `http` only for loopback registries or when
 * `plainHttp` is set. `layerNode` adds TLS options: `caFile` **adds** the PEM certificates to
 * Node's bundled roots (a private CA does not stop public registries from verifying), and
 * `insecure` skips certificate verification (still TLS).
 *
 * @since 0.1.0
 */
import * as HttpClient from "@effect/platform/HttpClient"
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as Undici from "@effect/platform-node/Undici"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import { identity } from "effect/Function"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Stream from "effect/Stream"
import * as Fs from "node:fs/promises"
import * as Tls from "node:tls"
import { Credentials } from "./Credentials.js"
import * as Digest from "./Digest.js"
import {
  CorruptState,
  InvalidConfig,
  isTransientRegistry,
  RegistryError,
  type RegistryFailure,
  TransientRegistry,
  Unsupported
} from "./Errors.js"
import { type AuthScope, makeAuthenticator, parseTokenResponse, unauthorizedTokenEndpoint } from "./internal/http/auth.js"
import { readVerifiedBlob } from "./internal/http/body.js"
import { makeExchange } from "./internal/http/nativeExchange.js"
import { nextLink } from "./internal/http/link.js"
import { discard, makeTransport, readBytes, readText, type RegistryResponse } from "./internal/http/transport.js"
import * as Pages from "./internal/pages.js"
import * as Reference from "./internal/reference.js"
import { instrumentRegistry, registrySpan } from "./internal/telemetry.js"
import * as Verify from "./internal/verify.js"
import { RegistryRateLimiter } from "./RateLimiter.js"
import {
  type BlobBody,
  type BlobRef,
  type BlobUpload,
  type ListTagsOptions,
  manifestAccept,
  maxManifestBytes,
  Registry,
  type Service
} from "./Registry.js"
import * as Retry from "./Retry.js"

/**
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** `host[:port]`, or `https://host[:port]` / `http://host[:port]` (no path). */
  readonly registry: string
  /** Allow plain `http://` to a non-loopback registry. */
  readonly plainHttp?: boolean | undefined
  readonly retry?: Retry.Options | undefined
  readonly userAgent?: string | undefined
  /** Time allowed for a response head to arrive (default 60 s). */
  readonly requestTimeout?: Duration.DurationInput | undefined
  /** Longest pause allowed while a body streams (default 60 s). */
  readonly idleTimeout?: Duration.DurationInput | undefined
  /** `n` asked on tag listing (default 1000). */
  readonly tagPageSize?: number | undefined
  /** Upper bound on tag pages followed (default 10,000), against runaway pagination. */
  readonly maxTagPages?: number | undefined
  /**
   * Lets applications add proxies, tracing or logging around the client. With `layerNode`, giving
   * one sends registry requests through the (transformed) platform client instead of straight to
   * undici.
   */
  readonly transformClient?: ((client: HttpClient.HttpClient) => HttpClient.HttpClient) | undefined
}

/**
 * TLS options of the Node client.
 *
 * @since 0.1.0
 * @category models
 */
export interface TlsOptions {
  /** PEM bundle added to Node's root certificates. */
  readonly caFile?: string | undefined
  /** Skip certificate verification (the connection is still TLS). */
  readonly insecure?: boolean | undefined
}

/**
 * The registry address, split: the origin requests go to and the host credentials are looked up by.
 *
 * @since 0.1.0
 * @category models
 */
export interface Endpoint {
  readonly origin: string
  readonly host: string
}

const dockerHubHosts = new Set(["docker.io", "index.docker.io", "registry-1.docker.io"])

/**
 * @since 0.1.0
 * @category utils
 */
export const isLoopbackHost = (hostname: string): boolean => {
  const h = hostname.replace(/^\[|\]$/g, "").toLowerCase()
  return h === "localhost" || h === "::1" || /^127(\.\d{1,3}){3}$/.test(h)
}

/**
 * Parse a registry address into the origin to talk to and the credential host.
 *
 * @since 0.1.0
 * @category constructors
 */
export const parseEndpoint = (registry: string, plainHttp = false): Effect.Effect<Endpoint, InvalidConfig> =>
  Effect.suspend(() => {
    const invalid = (reason: string) =>
      Effect.fail(new InvalidConfig({ key: "registry", value: withoutUserinfo(registry), reason }))
    const trimmed = withoutTrailingSlashes(registry.trim())
    const hasScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(trimmed)
    let url: URL
    try {
      url = new URL(hasScheme ? trimmed : `https://${trimmed}`)
    } catch {
      return invalid("not a host[:port] or http(s) URL")
    }
    if (url.username !== "" || url.password !== "") return invalid("credentials do not belong in the address")
    if (url.pathname !== "/" || url.search !== "" || url.hash !== "") return invalid("must not have a path")
    if (url.protocol !== "https:" && url.protocol !== "http:") return invalid("scheme must be http or https")
    const loopback = isLoopbackHost(url.hostname)
    if (!hasScheme && loopback) url.protocol = "http:"
    if (url.protocol === "http:" && !loopback && !plainHttp) {
      return invalid("plain http is only used for loopback registries unless plainHttp (insecure) is set")
    }
    const host = url.host.toLowerCase()
    if (dockerHubHosts.has(url.hostname)) {
      return Effect.succeed({ origin: "https://registry-1.docker.io", host: "docker.io" })
    }
    return Effect.succeed({ origin: url.origin, host })
  })

// An address as shown in errors: a `user:password@` part (which does not belong there, but may
// hold a real password) is replaced.
// (Linear: the single regular expression this replaces backtracked quadratically on long runs of
// spaces, as did `/\/+$/` on runs of slashes.)
const withoutUserinfo = (address: string): string => {
  const lead = /^\s*(?:[a-z][a-z0-9+.-]*:\/\/)?/i.exec(address)![0]
  const rest = address.slice(lead.length)
  const at = rest.search(/[/@]/)
  return at >= 0 && rest[at] === "@" ? `${lead}<redacted>@${rest.slice(at + 1)}` : address
}

const withoutTrailingSlashes = (s: string): string => {
  let end = s.length
  while (end > 0 && s[end - 1] === "/") end--
  return s.slice(0, end)
}

/**
 * Build the service from an `HttpClient`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: Options) => makeWith(options, false, undefined)

// `timeoutsInClient`: the HTTP client itself enforces `requestTimeout` on response heads and
// `idleTimeout` on bodies (the undici dispatcher of `layerNode`: one native timer per request,
// re-armed per read), so requests and blob streams need no timer fibers of their own —
// `Stream.timeoutFail` races a fresh timer fiber on every read, which on a large download cost
// more CPU than hashing it and delayed every read; `Effect.timeoutFail` did the same per request.
// `dispatcher`: requests go straight to it (see `internal/http/nativeExchange.ts`) unless the
// application transforms the client.
const makeWith = (options: Options, timeoutsInClient: boolean, dispatcher: Undici.Dispatcher | undefined) =>
  Effect.gen(function*() {
    const endpoint = yield* parseEndpoint(options.registry, options.plainHttp ?? false)
    const credentials = yield* Credentials
    const limiter = yield* RegistryRateLimiter
    const baseClient = yield* HttpClient.HttpClient
    const client = options.transformClient === undefined ? baseClient : options.transformClient(baseClient)
    const native = dispatcher !== undefined && options.transformClient === undefined ? makeExchange(dispatcher) : undefined
    const policy = Retry.schedule(options.retry)
    const retrying = <A, E, R>(self: Effect.Effect<A, E, R>) => Retry.retryTransient(self, policy)
    const requestTimeout = Duration.decode(options.requestTimeout ?? defaultRequestTimeout)
    const idleTimeout = Duration.decode(options.idleTimeout ?? defaultIdleTimeout)
    const userAgent = options.userAgent ?? "oras-state/0.1"
    // A whole body read is bounded by `idleTimeout` (by the client itself when it enforces it).
    const bodyTimer = (operation: string) => <A, E, R>(self: Effect.Effect<A, E, R>) =>
      timeoutsInClient
        ? self
        : Effect.timeoutFail(self, { duration: idleTimeout, onTimeout: () => bodyStalled(operation) })
    const pageSize = Math.max(1, Math.floor(options.tagPageSize ?? 1000))
    const maxPages = Math.max(1, Math.floor(options.maxTagPages ?? 10_000))

    // Token fetches go through the same limiter, timeout and retry policy as registry requests.
    const tokenTransport = makeTransport({
      client,
      origin: "",
      limiter,
      authenticator: { headerFor: () => Effect.succeedNone, afterChallenge: () => Effect.succeedNone },
      userAgent,
      requestTimeout,
      timeoutInClient: timeoutsInClient,
      maxRedirects: 0,
      native
    })

    const authenticator = yield* makeAuthenticator({
      host: endpoint.host,
      credentials,
      fetchToken: (request, credential) =>
        Effect.gen(function*() {
          const operation = "fetchToken"
          const realm = yield* Effect.try({
            try: () => new URL(request.realm),
            catch: () => new RegistryError({ operation, reason: "the registry named an invalid token realm" })
          })
          if (realm.protocol !== "https:" && realm.protocol !== "http:") {
            return yield* new RegistryError({ operation, reason: "the token realm must be an http(s) URL" })
          }
          // Never hand a secret to a plain-http realm on another machine.
          if (
            Option.isSome(credential) && realm.protocol === "http:" && !isLoopbackHost(realm.hostname) &&
            options.plainHttp !== true
          ) {
            return yield* new RegistryError({
              operation,
              reason: "refusing to send credentials to a plain-http token realm"
            })
          }
          const spec = tokenRequestSpec(realm, request, credential)
          const response = yield* retrying(tokenTransport.send(operation, spec))
          if (response.status === 401 || response.status === 403) {
            yield* discard(response)
            return yield* unauthorizedTokenEndpoint(operation, response.status)
          }
          const ok = yield* tokenTransport.expectStatus(operation, response, [200]).pipe(
            Effect.catchTag("Unsupported", (e) => new RegistryError({ operation, status: e.status, reason: e.reason }))
          )
          const text = yield* readText(ok, 128 * 1024).pipe(Effect.mapError(() => new TransientRegistry({ operation, reason: "the token response was cut off" })))
          return yield* parseTokenResponse(text, operation)
        }).pipe(span("fetchToken", request.repository)) // shared through the token cache: its own trace
    })

    const transport = makeTransport({
      client,
      origin: endpoint.origin,
      limiter,
      authenticator,
      userAgent,
      requestTimeout,
      timeoutInClient: timeoutsInClient,
      maxRedirects: 5,
      native
    })

    const apiUrl = (path: string) => new URL(`${endpoint.origin}/v2/${path}`)
    const pull = (repository: string): AuthScope => ({ repository, actions: ["pull"] })
    const push = (repository: string): AuthScope => ({ repository, actions: ["pull", "push"] })
    const del = (repository: string): AuthScope => ({ repository, actions: ["delete"] })
    const span = (name: string, repository: string, reference?: string, bytes?: number) =>
      registrySpan(name, { registry: endpoint.host, repository, reference, bytes }, "client")

    const validated = (repository: string, reference: string) =>
      Effect.zip(Reference.validateRepository(repository), Reference.validateReference(reference))

    const resolveManifest: Service["resolveManifest"] = (repository, reference) =>
      Effect.gen(function*() {
        yield* validated(repository, reference)
        const operation = "resolveManifest"
        const response = yield* transport.send(operation, {
          method: "HEAD",
          url: apiUrl(`${repository}/manifests/${reference}`),
          headers: { accept: manifestAccept },
          scope: pull(repository)
        })
        if (response.status === 404) return Option.none()
        yield* transport.expectStatus(operation, response, [200])
        const reported = response.headers["docker-content-digest"]
        const size = Number(response.headers["content-length"])
        const mediaType = mediaTypeOf(response)
        if (Digest.isDigest(reported) && Number.isSafeInteger(size) && size >= 0 && mediaType !== undefined) {
          if (Reference.isDigestReference(reference) && reported !== reference) {
            return yield* new CorruptState({ digest: reference, reason: `the registry resolved it to ${reported}` })
          }
          return Option.some({ digest: reported, size, mediaType })
        }
        // Old registries may omit the digest on HEAD: fetch and hash instead.
        return yield* Effect.map(fetchManifest(repository, reference), Option.map((m) => ({
          digest: m.digest,
          size: m.bytes.byteLength,
          mediaType: m.mediaType
        })))
      }).pipe(Effect.catchTag("Unsupported", toRegistryError), retrying, span("resolveManifest", repository, reference))

    const fetchManifest = (repository: string, reference: string) =>
      Effect.gen(function*() {
        const operation = "getManifest"
        const response = yield* transport.send(operation, {
          method: "GET",
          url: apiUrl(`${repository}/manifests/${reference}`),
          headers: { accept: manifestAccept },
          scope: pull(repository)
        })
        if (response.status === 404) {
          yield* discard(response)
          return Option.none()
        }
        yield* transport.expectStatus(operation, response, [200])
        const declared = Number(response.headers["content-length"])
        if (Number.isFinite(declared) && declared > maxManifestBytes) {
          yield* discard(response)
          return yield* manifestTooLarge(reference)
        }
        const bytes = yield* readBytes(response, maxManifestBytes, () => manifestTooLarge(reference)).pipe(
          bodyTimer(operation),
          Effect.catchTag("BodyFailure", (error) => bodyInterrupted(operation, error))
        )
        const expected = [
          Reference.isDigestReference(reference) ? reference : undefined,
          response.headers["docker-content-digest"]
        ]
        const digest = yield* Verify.verifyManifestBytes(bytes, expected)
        const mediaType = mediaTypeOf(response) ?? mediaTypeInBody(bytes)
        if (mediaType === undefined) {
          return yield* new CorruptState({ digest, reason: "manifest has no media type" })
        }
        return Option.some({ digest, mediaType, bytes })
      }).pipe(Effect.catchTag("Unsupported", toRegistryError))

    const getManifest: Service["getManifest"] = (repository, reference) =>
      Effect.zipRight(validated(repository, reference), fetchManifest(repository, reference)).pipe(
        retrying,
        span("getManifest", repository, reference)
      )

    const putManifest: Service["putManifest"] = (repository, reference, manifest) => {
      const put = Effect.gen(function*() {
        yield* validated(repository, reference)
        const operation = "putManifest"
        if (manifest.bytes.byteLength > maxManifestBytes) {
          return yield* new RegistryError({
            operation,
            reason: `manifest of ${manifest.bytes.byteLength} bytes exceeds the ${maxManifestBytes}-byte limit of registries`
          })
        }
        const digest = Digest.sha256(manifest.bytes)
        if (Reference.isDigestReference(reference) && reference !== digest) {
          return yield* new RegistryError({ operation, reason: `manifest bytes hash to ${digest}, not ${reference}` })
        }
        const response = yield* transport.send(operation, {
          method: "PUT",
          url: apiUrl(`${repository}/manifests/${reference}`),
          body: { contentType: manifest.mediaType, bytes: manifest.bytes },
          scope: push(repository)
        })
        yield* transport.expectStatus(operation, response, [200, 201, 202, 204])
        yield* discard(response)
        const reported = response.headers["docker-content-digest"]
        if (reported !== undefined && reported.startsWith("sha256:") && reported !== digest) {
          return yield* new CorruptState({ digest, reason: `the registry stored the manifest as ${reported}` })
        }
        return digest
      }).pipe(Effect.catchTag("Unsupported", toRegistryError))
      return (Reference.isDigestReference(reference) ? retrying(put) : put).pipe(
        span("putManifest", repository, reference, manifest.bytes.byteLength)
      )
    }

    const deleteManifest: Service["deleteManifest"] = (repository, reference) => {
      const byDigest = Reference.isDigestReference(reference)
      let attempts = 0
      const attempt = Effect.gen(function*() {
        yield* validated(repository, reference)
        const operation = "deleteManifest"
        attempts++
        const response = yield* transport.send(operation, {
          method: "DELETE",
          url: apiUrl(`${repository}/manifests/${reference}`),
          scope: del(repository)
        })
        // A retried DELETE whose first response was lost finds the manifest gone: it was ours.
        if (response.status === 404) {
          yield* discard(response)
          return attempts > 1
        }
        if ([200, 202, 204].includes(response.status)) {
          yield* discard(response)
          return true
        }
        const failure = yield* transport.failure(operation, response)
        // Registries without tag deletion answer 400 DIGEST_INVALID (distribution 2.8) or UNSUPPORTED (Harbor).
        if (!byDigest && failure._tag === "RegistryError" && failure.status === 400) {
          return yield* new Unsupported({
            operation,
            status: 400,
            ...(failure.code === undefined ? {} : { code: failure.code }),
            reason: "deletion by tag is not supported by this registry"
          })
        }
        return yield* failure
      })
      return (byDigest ? retrying(attempt) : attempt).pipe(span("deleteManifest", repository, reference))
    }

    const blobExists: Service["blobExists"] = (repository, digest) =>
      Effect.gen(function*() {
        yield* Reference.validateRepository(repository)
        yield* Reference.validateDigest(digest)
        const operation = "blobExists"
        const response = yield* transport.send(operation, {
          method: "HEAD",
          url: apiUrl(`${repository}/blobs/${digest}`),
          scope: pull(repository),
          followRedirects: true
        })
        if (response.status === 404) return Option.none()
        yield* transport.expectStatus(operation, response, [200])
        const size = Number(response.headers["content-length"])
        return Option.some(Number.isSafeInteger(size) && size >= 0 ? size : 0)
      }).pipe(Effect.catchTag("Unsupported", toRegistryError), retrying, span("blobExists", repository, digest))

    // GET a blob: the response, once its status and declared length are right.
    const openBlob = (repository: string, blob: BlobRef) =>
      Effect.gen(function*() {
        const operation = "getBlob"
        yield* Reference.validateRepository(repository)
        yield* Reference.validateDigest(blob.digest)
        const response = yield* transport.send(operation, {
          method: "GET",
          url: apiUrl(`${repository}/blobs/${blob.digest}`),
          scope: pull(repository),
          followRedirects: true
        })
        if (response.status === 404) {
          yield* discard(response)
          return yield* new RegistryError({
            operation,
            status: 404,
            code: "BLOB_UNKNOWN",
            reason: `blob unknown to registry: ${blob.digest}`
          })
        }
        const declared = Number(response.headers["content-length"])
        if (response.status === 200 && Number.isFinite(declared) && declared !== blob.size) {
          yield* discard(response)
          return yield* new CorruptState({
            digest: blob.digest,
            reason: `the registry serves ${declared} bytes, the descriptor declares ${blob.size}`
          })
        }
        return yield* transport.expectStatus(operation, response, [200])
      }).pipe(Effect.catchTag("Unsupported", toRegistryError))

    // The whole blob inside the retried request: a body cut off midway is retried like any
    // idempotent GET, and nothing is returned before it was verified. At most `blob.size` bytes
    // are accepted.
    const getBlobBytes: Service["getBlobBytes"] = (repository, blob) =>
      Effect.flatMap(openBlob(repository, blob), (response) =>
        readVerifiedBlob(response, blob).pipe(
          bodyTimer("getBlob"),
          Effect.catchTag("BodyFailure", (error) => Effect.fail(blobCutOff(error)))
        )).pipe(retrying, span("getBlob", repository, blob.digest, blob.size))

    const getBlob: Service["getBlob"] = (repository, blob) => {
      // A small blob (most states) is read whole and emitted as one chunk: one read instead of
      // one stream step per network read (tens of µs each through the platform's stream and
      // ours, more than the bytes themselves cost on a fast link).
      if (blob.size <= bufferedBlobBytes) return Stream.fromEffect(getBlobBytes(repository, blob))
      const operation = "getBlob"
      const streamed = openBlob(repository, blob).pipe(retrying, span("getBlob", repository, blob.digest, blob.size))
      return Stream.unwrap(Effect.map(streamed, (response) =>
        response.stream.pipe(
          Stream.mapError(blobCutOff),
          timeoutsInClient ? identity : Stream.timeoutFail(() => bodyStalled(operation), idleTimeout),
          Verify.verifyBlobStream(blob)
        )))
    }

    // POST: an upload session; its `Location` (with the registry's own query, kept).
    const openUpload = (repository: string) =>
      Effect.gen(function*() {
        const operation = "putBlob"
        yield* Reference.validateRepository(repository)
        const started = yield* transport.send(operation, {
          method: "POST",
          url: apiUrl(`${repository}/blobs/uploads/`),
          scope: push(repository)
        })
        yield* transport.expectStatus(operation, started, [202])
        yield* discard(started)
        const location = started.headers["location"]
        if (location === undefined) {
          return yield* new RegistryError({ operation, status: 202, reason: "upload started without a Location" })
        }
        return yield* Effect.try({
          try: () => new URL(location, apiUrl(`${repository}/blobs/uploads/`)),
          catch: () => new RegistryError({ operation, reason: "upload Location is not a valid URL" })
        })
      }).pipe(Effect.catchTag("Unsupported", toRegistryError))

    // PUT the whole blob to an open session, closing it.
    const closeUpload = (repository: string, location: URL, blob: BlobRef, body: BlobBody) =>
      Effect.gen(function*() {
        const operation = "putBlob"
        yield* Reference.validateDigest(blob.digest)
        const uploadUrl = new URL(location)
        // The Location carries its own query (upload state): append to it, never replace it.
        uploadUrl.search = `${uploadUrl.search === "" ? "?" : `${uploadUrl.search}&`}digest=${
          encodeURIComponent(blob.digest)
        }`
        const finished = yield* transport.send(operation, {
          method: "PUT",
          url: uploadUrl,
          body: { contentType: "application/octet-stream", bytes: body },
          scope: push(repository)
        })
        yield* transport.expectStatus(operation, finished, [201, 204])
        yield* discard(finished)
      }).pipe(Effect.catchTag("Unsupported", toRegistryError))

    // POST and PUT, retried together (a session may not survive what interrupted it).
    const uploadBlob = (repository: string, blob: BlobRef, body: BlobBody) =>
      Effect.zipRight(Reference.validateDigest(blob.digest), openUpload(repository)).pipe(
        Effect.flatMap((location) => closeUpload(repository, location, blob, body)),
        retrying
      )

    const putBlob: Service["putBlob"] = (repository, blob, body) =>
      uploadBlob(repository, blob, body).pipe(span("putBlob", repository, blob.digest, blob.size))

    // The session is opened now; a close that fails transiently is retried as a whole upload.
    const startBlobUpload: Service["startBlobUpload"] = (repository) =>
      openUpload(repository).pipe(
        retrying,
        span("startBlobUpload", repository),
        Effect.map((location): BlobUpload => ({
          finish: (blob, body) =>
            closeUpload(repository, location, blob, body).pipe(
              Effect.catchIf(isTransientRegistry, () => uploadBlob(repository, blob, body)),
              span("putBlob", repository, blob.digest, blob.size)
            )
        }))
      )

    // The pages of one run of a tag listing: the first page's URL, and the page reader (with the
    // run's loop-protection state: each run starts from scratch, so the same Stream or Effect
    // value can be run again, or retried by the caller).
    const tagPages = (repository: string, listOptions: ListTagsOptions | undefined) => {
      const operation = "listTags"
      const n = Math.max(1, Math.floor(listOptions?.pageSize ?? pageSize))
      const first = apiUrl(`${repository}/tags/list?n=${n}`)
      const page = (url: URL) =>
        Effect.gen(function*() {
          const response = yield* transport.send(operation, { method: "GET", url, scope: pull(repository) })
          // An unknown repository has no tags.
          if (response.status === 404) {
            yield* discard(response)
            return { tags: [] as Array<string>, next: undefined }
          }
          yield* transport.expectStatus(operation, response, [200])
          const text = yield* readBytes(response, 16 * 1024 * 1024, () =>
            new RegistryError({ operation, reason: "tag list page larger than 16 MiB" })).pipe(
              bodyTimer(operation),
              Effect.catchTag("BodyFailure", (error) => bodyInterrupted(operation, error))
            )
          const tags = yield* parseTagList(text, operation)
          const next = nextLink(response.headers["link"], url)
          // Pagination stays on the registry: a Link elsewhere is refused rather than followed
          // (anonymously or not), since no registry has a reason to send one.
          if (next !== undefined && next.origin !== endpoint.origin) {
            return yield* new RegistryError({ operation, reason: "tag pagination Link points to another origin" })
          }
          return { tags, next }
        }).pipe(Effect.catchTag("Unsupported", toRegistryError), retrying, span("listTags", repository))
      const visited = new Set<string>()
      const seen = new Set<string>()
      const walk = (url: URL): Effect.Effect<Pages.Page<string, URL>, RegistryFailure> =>
        Effect.gen(function*() {
          visited.add(url.href)
          if (visited.size > maxPages) {
            return yield* new RegistryError({ operation, reason: `tag listing exceeded ${maxPages} pages` })
          }
          const { next, tags } = yield* page(url)
          const fresh = tags.filter((t) => !seen.has(t))
          for (const t of fresh) seen.add(t)
          // Loop protection: a Link back to a page already read, or a page with nothing new, ends
          // the listing with an error instead of cycling forever.
          if (next !== undefined && (visited.has(next.href) || (tags.length > 0 && fresh.length === 0))) {
            return yield* new RegistryError({ operation, reason: "tag pagination loops (Link repeats a page)" })
          }
          const more = next !== undefined && tags.length > 0
          return [fresh, more ? Option.some(next) : Option.none<URL>()] as const
        })
      return { first, walk }
    }

    const listTags: Service["listTags"] = (repository, listOptions) =>
      Stream.unwrap(Effect.as(
        Reference.validateRepository(repository),
        Stream.suspend(() => {
          const { first, walk } = tagPages(repository, listOptions)
          return Pages.stream(first, walk)
        })
      ))

    const listAllTags: Service["listAllTags"] = (repository, listOptions) =>
      Effect.zipRight(
        Reference.validateRepository(repository),
        Effect.suspend(() => {
          const { first, walk } = tagPages(repository, listOptions)
          return Pages.collect(first, walk)
        })
      )

    // Spans are emitted above; the wrapper counts bytes moved.
    return Registry.of(instrumentRegistry({
      location: endpoint.origin,
      resolveManifest,
      getManifest,
      putManifest,
      deleteManifest,
      blobExists,
      getBlob,
      getBlobBytes,
      putBlob,
      startBlobUpload,
      listTags,
      listAllTags
    }, { spans: false }))
  })

/**
 * The service over any `HttpClient` (for custom clients and tests).
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  options: Options
): Layer.Layer<Registry, InvalidConfig, HttpClient.HttpClient | Credentials | RegistryRateLimiter> =>
  Layer.effect(Registry, make(options))

/**
 * An undici dispatcher with the TLS options applied, closed with its scope.
 *
 * @since 0.1.0
 * @category layers
 */
export const dispatcherLayer = (tls: TlsOptions = {}): Layer.Layer<NodeHttpClient.Dispatcher, InvalidConfig> =>
  nodeDispatcher(tls, undefined)

// Connections are kept alive after HEAD requests too: undici closes them by default (against
// servers that send a body anyway, which registries do not), so every HEAD cost a new connection
// for the request after it. With `timeouts`, every request gets them as undici's `headersTimeout`
// (the response head) and `bodyTimeout` (the longest pause between two reads of a body while it is
// consumed), overriding the values the platform client sets (1 hour, and none).
const nodeDispatcher = (
  tls: TlsOptions,
  timeouts: { readonly request: Duration.Duration; readonly idle: Duration.Duration } | undefined
): Layer.Layer<NodeHttpClient.Dispatcher, InvalidConfig> =>
  Layer.scoped(
    NodeHttpClient.Dispatcher,
    Effect.gen(function*() {
      const ca = tls.caFile === undefined ? undefined : yield* readCaFile(tls.caFile)
      return yield* Effect.acquireRelease(
        Effect.sync(() => {
          const millis = (duration: Duration.Duration) => Math.max(1, Math.ceil(Duration.toMillis(duration)))
          const limits = timeouts === undefined
            ? {}
            : { headersTimeout: millis(timeouts.request), bodyTimeout: millis(timeouts.idle) }
          // A subclass rather than `compose`: an interceptor wraps every response handler (a cost
          // on each chunk of each body).
          class RegistryAgent extends Undici.Agent {
            override dispatch(request: Undici.Dispatcher.DispatchOptions, handler: Undici.Dispatcher.DispatchHandler) {
              return super.dispatch({ ...request, ...limits, ...(request.method === "HEAD" ? { reset: false } : {}) }, handler)
            }
          }
          return new RegistryAgent({
            connect: {
              ...(ca === undefined ? {} : { ca: [...Tls.rootCertificates, ca] }),
              rejectUnauthorized: tls.insecure !== true
            }
          })
        }),
        (agent) => Effect.promise(() => agent.destroy())
      )
    })
  )

/**
 * The service on Node's undici client, with TLS options.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerNode = (
  options: Options & TlsOptions
): Layer.Layer<Registry, InvalidConfig, Credentials | RegistryRateLimiter> =>
  Layer.effect(Registry, Effect.flatMap(NodeHttpClient.Dispatcher, (dispatcher) => makeWith(options, true, dispatcher))).pipe(
    Layer.provide(NodeHttpClient.layerUndiciWithoutDispatcher),
    Layer.provide(nodeDispatcher(options, {
      request: Duration.decode(options.requestTimeout ?? defaultRequestTimeout),
      idle: Duration.decode(options.idleTimeout ?? defaultIdleTimeout)
    }))
  )

const readCaFile = (path: string) =>
  Effect.tryPromise({
    try: () => Fs.readFile(path, "utf8"),
    catch: () => new InvalidConfig({ key: "ca_file", value: path, reason: "cannot be read" })
  }).pipe(
    Effect.filterOrFail(
      (pem) => pem.includes("-----BEGIN CERTIFICATE-----"),
      () => new InvalidConfig({ key: "ca_file", value: path, reason: "holds no PEM certificate" })
    )
  )

const tokenRequestSpec = (
  realm: URL,
  request: { readonly service: string | undefined; readonly scopes: ReadonlyArray<string> },
  credential: Option.Option<import("./Credentials.js").Credential>
) => {
  const url = new URL(realm)
  if (Option.isSome(credential) && credential.value._tag === "RefreshToken") {
    // OAuth2 refresh-token grant (docker `identitytoken`): POST form.
    const form = new URLSearchParams({ grant_type: "refresh_token", client_id: "oras-state" })
    form.set("refresh_token", Redacted.value(credential.value.token))
    if (request.service !== undefined) form.set("service", request.service)
    if (request.scopes.length > 0) form.set("scope", request.scopes.join(" "))
    const body = new TextEncoder().encode(form.toString())
    return {
      method: "POST" as const,
      url,
      body: { contentType: "application/x-www-form-urlencoded", bytes: body },
      secrets: [credential.value.token]
    }
  }
  if (request.service !== undefined) url.searchParams.set("service", request.service)
  for (const scope of request.scopes) url.searchParams.append("scope", scope)
  if (Option.isSome(credential) && credential.value._tag === "Basic") {
    url.searchParams.set("account", credential.value.username)
    return { method: "GET" as const, url, authorization: basicAuthorization(credential.value) }
  }
  return { method: "GET" as const, url }
}

const basicAuthorization = (
  credential: { readonly username: string; readonly password: Redacted.Redacted<string> }
): Redacted.Redacted<string> =>
  Redacted.make(
    `Basic ${Buffer.from(`${credential.username}:${Redacted.value(credential.password)}`, "utf8").toString("base64")}`
  )

const mediaTypeOf = (response: RegistryResponse): string | undefined => {
  const header = response.headers["content-type"]
  if (header === undefined) return undefined
  const type = header.split(";")[0]!.trim()
  return type === "" ? undefined : type
}

const mediaTypeInBody = (bytes: Uint8Array): string | undefined => {
  try {
    const json = JSON.parse(new TextDecoder().decode(bytes)) as { mediaType?: unknown } | null
    return typeof json?.mediaType === "string" ? json.mediaType : undefined
  } catch {
    return undefined
  }
}

const parseTagList = (bytes: Uint8Array, operation: string): Effect.Effect<Array<string>, RegistryError> =>
  Effect.suspend(() => {
    try {
      const json = JSON.parse(new TextDecoder().decode(bytes)) as { tags?: unknown } | null
      const tags = json?.tags ?? []
      if (Array.isArray(tags) && tags.every((t): t is string => typeof t === "string")) {
        return Effect.succeed(tags)
      }
    } catch {
      // fall through
    }
    return Effect.fail(new RegistryError({ operation, reason: "tag list is not {\"tags\": [string…]}" }))
  })

const toRegistryError = (e: Unsupported) =>
  Effect.fail(
    new RegistryError({
      operation: e.operation,
      ...(e.status === undefined ? {} : { status: e.status }),
      ...(e.code === undefined ? {} : { code: e.code }),
      reason: e.reason
    })
  )

const manifestTooLarge = (reference: string) =>
  new CorruptState({
    digest: reference,
    reason: `manifest larger than ${maxManifestBytes} bytes`
  })

const defaultRequestTimeout = Duration.seconds(60)
const defaultIdleTimeout = Duration.seconds(60)

// Blobs up to this size are downloaded in one read (see `getBlob`); larger ones are streamed.
const bufferedBlobBytes = 8 * 1024 * 1024

// undici's idle timeout on a body (see `nodeDispatcher`), as the stream reports it.
const isBodyTimeout = (error: { readonly cause?: unknown }): boolean => {
  const cause = error.cause as { readonly code?: unknown } | undefined
  return cause?.code === "UND_ERR_BODY_TIMEOUT"
}

const bodyStalled = (operation: string) =>
  new TransientRegistry({ operation, reason: "the response body stalled" })

// A blob download that stopped: stalled (the client's body timeout) or cut off.
const blobCutOff = (error: { readonly cause?: unknown }) =>
  isBodyTimeout(error)
    ? bodyStalled("getBlob")
    : new TransientRegistry({ operation: "getBlob", reason: "the blob download was cut off" })

const bodyInterrupted = (operation: string, error: { readonly cause?: unknown }) =>
  Effect.fail(
    isBodyTimeout(error) ? bodyStalled(operation) : new TransientRegistry({ operation, reason: "the response body was cut off" })
  )
