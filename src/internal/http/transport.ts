/**
 * One registry request, end to end: rate limit, authentication (up-front header from what is
 * known, one retry after a 401 challenge), manual redirects, a timeout on the response head, and
 * mapping of transport failures into `TransientRegistry` (or `RegistryError` when retrying cannot
 * help, e.g. an untrusted TLS certificate). Status interpretation is left to the caller, except
 * that `expectStatus` turns an unexpected status into the matching tagged error.
 *
 * Credentials go to the origin they belong to and nowhere else: registry credentials only to the
 * registry's origin (not to a redirect target, an upload `Location` or a pagination `Link` on
 * another host), and a fixed header (token endpoint) only to the URL it was made for.
 *
 * Error messages name the method and the URL path only: query strings can hold upload state or
 * signed storage URLs, and no header value is ever copied into an error. Error bodies are scrubbed
 * of the credentials the request carried before any of their text is kept.
 *
 * @internal
 */
import * as HttpBody from "@effect/platform/HttpBody"
import type * as HttpClient from "@effect/platform/HttpClient"
import type * as HttpClientError from "@effect/platform/HttpClientError"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import type * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import { identity } from "effect/Function"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Stream from "effect/Stream"
import {
  type CredentialsError,
  RegistryError,
  TransientRegistry,
  Unauthorized,
  type Unsupported
} from "../../Errors.js"
import type * as RateLimiter from "../../RateLimiter.js"
import { parseRetryAfter } from "../../Retry.js"
import { httpClientSpan, propagationHeaders, withSafeTracing } from "../telemetry.js"
import type { AuthScope, Authenticator } from "./auth.js"
import { type BodyFailure, bodyFailure, type Exchange, type NativeResponse } from "./nativeExchange.js"
import { errorFromStatus, parseOciErrorBody } from "./ociError.js"

/** @internal */
export type Method = "GET" | "HEAD" | "PUT" | "POST" | "DELETE" | "PATCH"

/** @internal */
export interface RequestSpec {
  readonly method: Method
  readonly url: URL
  readonly headers?: Readonly<Record<string, string>> | undefined
  /**
   * Sent as `application/octet-stream`-like bytes with a `Content-Length` (a list of chunks in
   * order); `contentType` names the type. Resent as is by a retried or re-authenticated request.
   */
  readonly body?: RequestBody | undefined
  /** Authorization scope; none for requests outside the registry API. */
  readonly scope?: AuthScope | undefined
  /**
   * A fixed Authorization header, sent instead of negotiating (token endpoint requests), and only
   * to the origin of `url`.
   */
  readonly authorization?: Redacted.Redacted<string> | undefined
  /** Credentials carried in the body (a refresh token): scrubbed from error text like the header. */
  readonly secrets?: ReadonlyArray<Redacted.Redacted<string>> | undefined
  /** Follow 3xx redirects (blob downloads are commonly 307 to storage). */
  readonly followRedirects?: boolean | undefined
}

/** A request body and its media type. @internal */
export interface RequestBody {
  readonly contentType: string
  readonly bytes: Uint8Array | ReadonlyArray<Uint8Array>
}

/** @internal */
export type TransportFailure = TransientRegistry | RegistryError | Unauthorized | CredentialsError

/**
 * A response as the transport and the registry read it: the platform's `HttpClientResponse`, or a
 * `NativeResponse` of `layerNode`. Body failures carry the client's `cause`.
 *
 * @internal
 */
export interface RegistryResponse {
  readonly status: number
  readonly headers: Readonly<Record<string, string | undefined>>
  readonly request: { readonly method: string }
  readonly stream: Stream.Stream<Uint8Array, { readonly cause?: unknown }>
  readonly arrayBuffer: Effect.Effect<ArrayBuffer, { readonly cause?: unknown }>
}

/** @internal */
export interface TransportOptions {
  readonly client: HttpClient.HttpClient
  readonly origin: string
  readonly limiter: RateLimiter.Service
  readonly authenticator: Authenticator
  readonly userAgent: string
  readonly requestTimeout: Duration.Duration
  /**
   * The client enforces `requestTimeout` on the response head itself (undici's `headersTimeout`,
   * see `HttpRegistry.layerNode`): no timer fiber per request here.
   */
  readonly timeoutInClient?: boolean | undefined
  readonly maxRedirects: number
  /**
   * Exchanges straight on undici (`layerNode`, no `transformClient`): `client` is then not used
   * for registry requests. See `nativeExchange.ts`.
   */
  readonly native?: Exchange | undefined
}

const redirectStatuses = new Set([301, 302, 303, 307, 308])

/** The method and path of a URL, safe for messages. @internal */
export const describe = (method: string, url: URL): string => `${method} ${url.pathname}`

/** @internal */
export const makeTransport = (options: TransportOptions) => {
  const { authenticator, limiter } = options
  // Spans: our own `http.client` span per exchange (no query strings or headers recorded).
  const client = withSafeTracing(options.client)
  // The credentials each response's request carried, for scrubbing its error body.
  const sentSecrets = new WeakMap<RegistryResponse, ReadonlyArray<Redacted.Redacted<string>>>()

  const timedOut = (operation: string, method: string, url: URL) =>
    new TransientRegistry({
      operation,
      reason: `${describe(method, url)} timed out after ${Duration.format(options.requestTimeout)}`
    })

  // A request that got no response, as a tagged error (`requestPhase`: nothing was received; a
  // failure of the response itself is always transient).
  const exchangeFailed = (operation: string, method: string, url: URL, cause: unknown, requestPhase: boolean) => {
    const code = causeCode(cause)
    if (code === "UND_ERR_HEADERS_TIMEOUT") return timedOut(operation, method, url)
    const tls = requestPhase ? tlsFailure(method, url, code) : undefined
    if (tls !== undefined) return new RegistryError({ operation, reason: tls })
    const what = requestPhase ? "request failed" : "response failed"
    return new TransientRegistry({
      operation,
      reason: `${describe(method, url)}: ${what}${code === undefined ? "" : ` (${code})`}`
    })
  }

  const mapClientError = (operation: string, method: string, url: URL) => (error: HttpClientError.HttpClientError) =>
    error._tag === "RequestError" && error.reason !== "Transport"
      ? new RegistryError({ operation, reason: `request could not be sent (${error.reason})` })
      : exchangeFailed(operation, method, url, error.cause, error._tag === "RequestError")

  // One HTTP exchange: no auth negotiation, no redirects. `authorization` is attached only when
  // `url` is on `credentialOrigin`.
  const once = (
    operation: string,
    spec: RequestSpec,
    url: URL,
    authorization: Option.Option<Redacted.Redacted<string>>,
    credentialOrigin: string
  ): Effect.Effect<RegistryResponse, TransientRegistry | RegistryError> => {
    const headers: Record<string, string> = { "user-agent": options.userAgent, ...spec.headers }
    if (spec.body !== undefined) headers["content-type"] = spec.body.contentType
    if (Option.isSome(authorization) && url.origin === credentialOrigin) {
      headers["authorization"] = Redacted.value(authorization.value)
    }
    const secrets = [...Option.toArray(authorization), ...(spec.secrets ?? [])]
    const remember = (response: RegistryResponse) => {
      sentSecrets.set(response, secrets)
      skimTimeouts.set(response, options.requestTimeout)
      return response
    }
    const native = options.native
    const exchange: Effect.Effect<RegistryResponse, TransientRegistry | RegistryError> = native !== undefined
      ? Effect.flatMap(propagationHeaders, (trace) =>
        native({ method: spec.method, url, headers: { ...headers, ...trace }, body: spec.body?.bytes }).pipe(
          Effect.mapBoth({
            onFailure: (failure) => exchangeFailed(operation, spec.method, url, failure.cause, true),
            onSuccess: remember
          })
        ))
      : client.execute(platformRequest(spec, url, headers)).pipe(
        Effect.mapBoth({ onFailure: mapClientError(operation, spec.method, url), onSuccess: remember })
      )
    return exchange.pipe(
      options.timeoutInClient === true
        ? identity
        : Effect.timeoutFail({ duration: options.requestTimeout, onTimeout: () => timedOut(operation, spec.method, url) }),
      httpClientSpan(spec.method, url),
      limiter.limit
    )
  }

  /** Send a request, negotiating authentication and following redirects. */
  const send = (
    operation: string,
    spec: RequestSpec
  ): Effect.Effect<RegistryResponse, TransportFailure> =>
    Effect.gen(function*() {
      const fixed = spec.authorization !== undefined
      const credentialOrigin = fixed ? spec.url.origin : options.origin
      const offOrigin = spec.url.origin !== options.origin
      // Negotiate only with the registry itself: a challenge from another origin (an upload
      // Location elsewhere) must not switch the registry's auth mode or realm.
      const scope = fixed || offOrigin ? undefined : spec.scope
      let authorization = spec.authorization !== undefined
        ? Option.some(spec.authorization)
        : scope !== undefined
        ? yield* authenticator.headerFor(scope)
        : Option.none<Redacted.Redacted<string>>()
      let response = yield* once(operation, spec, spec.url, authorization, credentialOrigin)
      if (response.status === 401 && spec.scope !== undefined && !fixed && offOrigin) {
        yield* discard(response)
        return yield* new Unauthorized({
          operation,
          status: 401,
          reason: `${describe(spec.method, spec.url)} at ${spec.url.origin} requires credentials; ` +
            `they are only sent to the registry (${options.origin})`
        })
      }
      if (response.status === 401 && scope !== undefined) {
        const challenge = response.headers["www-authenticate"]
        yield* discard(response)
        const retryWith = yield* authenticator.afterChallenge(scope, challenge, authorization)
        if (Option.isNone(retryWith)) {
          return yield* unauthorized(operation, spec, challenge, Option.isSome(authorization))
        }
        authorization = retryWith
        response = yield* once(operation, spec, spec.url, authorization, credentialOrigin)
        if (response.status === 401) {
          const again = response.headers["www-authenticate"]
          yield* discard(response)
          return yield* unauthorized(operation, spec, again, true)
        }
      }
      let url = spec.url
      for (let hops = 0; spec.followRedirects === true && redirectStatuses.has(response.status); hops++) {
        const location = response.headers["location"]
        yield* discard(response)
        if (location === undefined || hops >= options.maxRedirects) {
          return yield* new RegistryError({
            operation,
            status: response.status,
            reason: location === undefined
              ? `${describe(spec.method, url)}: redirect without a Location`
              : `${describe(spec.method, spec.url)}: more than ${options.maxRedirects} redirects`
          })
        }
        const next = yield* Effect.try({
          try: () => new URL(location, url),
          catch: () => new RegistryError({ operation, reason: "redirect to an invalid Location" })
        })
        if (next.protocol !== "https:" && next.protocol !== "http:") {
          return yield* new RegistryError({ operation, reason: `redirect to unsupported scheme ${next.protocol}` })
        }
        url = next
        // `once` drops the credentials unless the hop stays on their origin (storage redirects).
        response = yield* once(operation, spec, url, authorization, credentialOrigin)
      }
      return response
    })

  const unauthorized = (operation: string, spec: RequestSpec, challenge: string | undefined, triedAuth: boolean) => {
    const insufficient = challenge !== undefined && /error\s*=\s*"?insufficient_scope/i.test(challenge)
    return Effect.fail(
      new Unauthorized({
        operation,
        status: 401,
        ...(insufficient ? { code: "insufficient_scope" } : {}),
        reason: insufficient
          ? `${describe(spec.method, spec.url)}: the credentials do not grant ${
            spec.scope === undefined ? "access" : spec.scope.actions.join(",")
          } on ${spec.scope?.repository ?? "the registry"}`
          : triedAuth
          ? `${describe(spec.method, spec.url)}: the registry refused the credentials`
          : `${describe(spec.method, spec.url)}: the registry requires credentials and none were found`
      })
    )
  }

  /**
   * Fail with the tagged error matching an unexpected status (reading a bounded part of the
   * OCI error body), or return the response when its status is one of `ok`.
   */
  const expectStatus = (
    operation: string,
    response: RegistryResponse,
    ok: ReadonlyArray<number>
  ): Effect.Effect<
    RegistryResponse,
    TransientRegistry | RegistryError | Unauthorized | Unsupported
  > =>
    ok.includes(response.status)
      ? Effect.succeed(response)
      : failure(operation, response).pipe(Effect.flatMap(Effect.fail))

  const failure = (operation: string, response: RegistryResponse) =>
    Effect.gen(function*() {
      const text = yield* readText(response, 64 * 1024).pipe(Effect.orElseSucceed(() => ""))
      const now = yield* Clock.currentTimeMillis
      const secrets = (sentSecrets.get(response) ?? []).map(Redacted.value)
      return errorFromStatus(
        operation,
        response.status,
        parseOciErrorBody(text, secrets),
        parseRetryAfter(response.headers["retry-after"], now)
      )
    })

  return { send, expectStatus, failure } as const
}

/** Read at most `limit` bytes of a body as UTF-8 (the rest is not read). @internal */
export const readText = (
  response: RegistryResponse,
  limit: number
): Effect.Effect<string, BodyFailure | Cause.TimeoutException> =>
  Effect.timeout(skimTimeout(response))(Effect.suspend(() => {
    const chunks: Array<Uint8Array> = []
    let size = 0
    return response.stream.pipe(
      Stream.takeWhile(() => size < limit),
      Stream.runForEach((chunk) =>
        Effect.sync(() => {
          const part = chunk.subarray(0, limit - size)
          chunks.push(part)
          size += part.byteLength
        })
      ),
      Effect.mapError(asBodyFailure),
      Effect.map(() => new TextDecoder().decode(concatAll(chunks, size)))
    )
  }))

/**
 * Read a whole body into memory, failing (`tooLarge`) as soon as it exceeds `limit` bytes.
 *
 * @internal
 */
export const readBytes = <E>(
  response: RegistryResponse,
  limit: number,
  tooLarge: () => E
): Effect.Effect<Uint8Array, E | BodyFailure> =>
  Effect.suspend(() => {
    // A declared length within the limit (manifests, tag lists: always, on distribution): one
    // read of the whole body, without the per-chunk stream machinery, which costs more than the
    // request itself for a small body.
    const declared = declaredLength(response)
    if (declared !== undefined) {
      return declared > limit
        ? Effect.fail(tooLarge())
        : Effect.mapBoth(response.arrayBuffer, { onFailure: asBodyFailure, onSuccess: (buffer) => new Uint8Array(buffer) })
    }
    const chunks: Array<Uint8Array> = []
    let size = 0
    return response.stream.pipe(
      Stream.mapError(asBodyFailure),
      Stream.runForEach((chunk) => {
        size += chunk.byteLength
        if (size > limit) return Effect.fail(tooLarge())
        chunks.push(chunk)
        return Effect.void
      }),
      Effect.map(() => concatAll(chunks, size))
    )
  })

/**
 * Release a response we do not read: drain up to 1 MiB (so the connection can be reused), giving
 * up — abandoning the connection — when the body stalls. @internal
 */
export const discard = (response: RegistryResponse): Effect.Effect<void> =>
  // No body at all (HEAD, `Content-Length: 0`: most write answers): nothing to drain.
  response.request.method === "HEAD" || declaredLength(response) === 0
    ? Effect.void
    : isNative(response)
    ? dumpNative(response)
    : Effect.ignore(Effect.timeout(Stream.runDrain(Stream.take(response.stream, 1 << 20)), skimTimeout(response)))

// A native body is drained by undici itself (`dump`: read and dropped, the connection destroyed
// past the limit; a stall ends at the dispatcher's body timeout). Through a stream and a timeout
// it cost ~800 Effect operations — on the happy path of every lock, whose `locked-` read is a 404.
const dumpNative = (response: NativeResponse): Effect.Effect<void> =>
  Effect.promise(() => response.readable.dump({ limit: 1 << 20 }).then(ignoreResult, ignoreResult))

const ignoreResult = (): void => undefined

/** Whether `response` came from a native exchange (see `nativeExchange.ts`). @internal */
export const isNative = (response: RegistryResponse): response is NativeResponse & RegistryResponse =>
  "readable" in response

// A body failure of either kind of response, with the client's cause.
const asBodyFailure = (error: { readonly cause?: unknown }): BodyFailure => bodyFailure(error.cause)

// The request of the platform client for `spec` (the transport's span replaces the platform's).
const platformRequest = (spec: RequestSpec, url: URL, headers: Record<string, string>) => {
  const request = HttpClientRequest.make(spec.method)(url, { headers })
  const body = spec.body
  if (body === undefined) return request
  return HttpClientRequest.setBody(
    request,
    body.bytes instanceof Uint8Array
      ? HttpBody.uint8Array(body.bytes, body.contentType)
      : HttpBody.stream(Stream.fromIterable(body.bytes), body.contentType, chunksLength(body.bytes))
  )
}

const chunksLength = (chunks: ReadonlyArray<Uint8Array>): number => chunks.reduce((size, chunk) => size + chunk.byteLength, 0)

// Bodies we only skim (error bodies, token answers, bodies we discard) are read within the request
// timeout of the exchange that produced them: a body that stalls must not hang the caller (the
// bodies callers consume are bounded by their own idle timeout).
const skimTimeouts = new WeakMap<RegistryResponse, Duration.Duration>()
const skimTimeout = (response: RegistryResponse): Duration.Duration =>
  skimTimeouts.get(response) ?? Duration.seconds(60)

// `Content-Length`, when the response has a valid one.
const declaredLength = (response: RegistryResponse): number | undefined => {
  const header = response.headers["content-length"]
  if (header === undefined || !/^\d{1,15}$/.test(header)) return undefined
  return Number(header)
}

const concatAll = (chunks: ReadonlyArray<Uint8Array>, size: number): Uint8Array => {
  if (chunks.length === 1) return chunks[0]!
  const out = new Uint8Array(size)
  let offset = 0
  for (const chunk of chunks) {
    out.set(chunk, offset)
    offset += chunk.byteLength
  }
  return out
}

// The system error code of a transport failure (e.g. ECONNRESET), if any.
const causeCode = (cause: unknown): string | undefined => {
  const error = cause as { code?: unknown; cause?: { code?: unknown } } | undefined
  return typeof error?.code === "string"
    ? error.code
    : typeof error?.cause?.code === "string"
    ? error.cause.code
    : undefined
}

// OpenSSL certificate verification codes (as Node reports them) and Node's hostname check.
const certificateCodes = /^(UNABLE_TO_(GET|VERIFY|DECRYPT)_|CERT_|SELF_SIGNED_CERT|DEPTH_ZERO_SELF_SIGNED_CERT|INVALID_CA|HOSTNAME_MISMATCH|ERR_TLS_CERT_ALTNAME_INVALID)/

/**
 * A TLS failure that retrying cannot fix (an untrusted or mismatched certificate, or TLS spoken to
 * a plain-http server), described with what to change; undefined for anything else.
 */
const tlsFailure = (method: string, url: URL, code: string | undefined): string | undefined => {
  if (code === undefined) return undefined
  const where = describe(method, url)
  if (certificateCodes.test(code)) {
    return `${where}: the registry's TLS certificate is not trusted (${code}); ` +
      "add its CA with caFile, or disable verification with insecure"
  }
  if (code === "ERR_SSL_WRONG_VERSION_NUMBER") {
    return `${where}: TLS handshake failed (${code}); the registry may only speak plain http`
  }
  return undefined
}
