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
import type * as HttpBody from "@effect/platform/HttpBody"
import type * as HttpClient from "@effect/platform/HttpClient"
import type * as HttpClientError from "@effect/platform/HttpClientError"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import type * as HttpClientResponse from "@effect/platform/HttpClientResponse"
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
import { httpClientSpan, withSafeTracing } from "../telemetry.js"
import type { AuthScope, Authenticator } from "./auth.js"
import { errorFromStatus, parseOciErrorBody } from "./ociError.js"

/** @internal */
export type Method = "GET" | "HEAD" | "PUT" | "POST" | "DELETE" | "PATCH"

/** @internal */
export interface RequestSpec {
  readonly method: Method
  readonly url: URL
  readonly headers?: Readonly<Record<string, string>> | undefined
  /** Built per attempt, so that a retried or re-authenticated request can resend its body. */
  readonly body?: (() => HttpBody.HttpBody) | undefined
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

/** @internal */
export type TransportFailure = TransientRegistry | RegistryError | Unauthorized | CredentialsError

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
  const sentSecrets = new WeakMap<HttpClientResponse.HttpClientResponse, ReadonlyArray<Redacted.Redacted<string>>>()

  const timedOut = (operation: string, method: string, url: URL) =>
    new TransientRegistry({
      operation,
      reason: `${describe(method, url)} timed out after ${Duration.format(options.requestTimeout)}`
    })

  const mapClientError = (operation: string) => (error: HttpClientError.HttpClientError) => {
    if (causeCode(error) === "UND_ERR_HEADERS_TIMEOUT") {
      return timedOut(operation, error.request.method, new URL(error.request.url))
    }
    if (error._tag === "RequestError" && error.reason !== "Transport") {
      return new RegistryError({ operation, reason: `request could not be sent (${error.reason})` })
    }
    const tls = tlsFailure(error)
    return tls === undefined
      ? new TransientRegistry({ operation, reason: transportReason(error) })
      : new RegistryError({ operation, reason: tls })
  }

  // One HTTP exchange: no auth negotiation, no redirects. `authorization` is attached only when
  // `url` is on `credentialOrigin`.
  const once = (
    operation: string,
    spec: RequestSpec,
    url: URL,
    authorization: Option.Option<Redacted.Redacted<string>>,
    credentialOrigin: string
  ): Effect.Effect<HttpClientResponse.HttpClientResponse, TransientRegistry | RegistryError> => {
    let request = HttpClientRequest.make(spec.method)(url, {
      headers: { "user-agent": options.userAgent, ...spec.headers }
    })
    if (spec.body !== undefined) request = HttpClientRequest.setBody(request, spec.body())
    if (Option.isSome(authorization) && url.origin === credentialOrigin) {
      request = HttpClientRequest.setHeader(request, "authorization", Redacted.value(authorization.value))
    }
    const secrets = [...Option.toArray(authorization), ...(spec.secrets ?? [])]
    return client.execute(request).pipe(
      Effect.tap((response) =>
        Effect.sync(() => {
          sentSecrets.set(response, secrets)
          skimTimeouts.set(response, options.requestTimeout)
        })
      ),
      Effect.mapError(mapClientError(operation)),
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
  ): Effect.Effect<HttpClientResponse.HttpClientResponse, TransportFailure> =>
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
    response: HttpClientResponse.HttpClientResponse,
    ok: ReadonlyArray<number>
  ): Effect.Effect<
    HttpClientResponse.HttpClientResponse,
    TransientRegistry | RegistryError | Unauthorized | Unsupported
  > =>
    ok.includes(response.status)
      ? Effect.succeed(response)
      : failure(operation, response).pipe(Effect.flatMap(Effect.fail))

  const failure = (operation: string, response: HttpClientResponse.HttpClientResponse) =>
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
  response: HttpClientResponse.HttpClientResponse,
  limit: number
): Effect.Effect<string, HttpClientError.ResponseError | Cause.TimeoutException> =>
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
      Effect.map(() => new TextDecoder().decode(concatAll(chunks, size)))
    )
  }))

/**
 * Read a whole body into memory, failing (`tooLarge`) as soon as it exceeds `limit` bytes.
 *
 * @internal
 */
export const readBytes = <E>(
  response: HttpClientResponse.HttpClientResponse,
  limit: number,
  tooLarge: () => E
): Effect.Effect<Uint8Array, E | HttpClientError.ResponseError> =>
  Effect.suspend(() => {
    // A declared length within the limit (manifests, tag lists: always, on distribution): one
    // read of the whole body, without the per-chunk stream machinery, which costs more than the
    // request itself for a small body.
    const declared = declaredLength(response)
    if (declared !== undefined) {
      return declared > limit
        ? Effect.fail(tooLarge())
        : Effect.map(response.arrayBuffer, (buffer) => new Uint8Array(buffer))
    }
    const chunks: Array<Uint8Array> = []
    let size = 0
    return response.stream.pipe(
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
export const discard = (response: HttpClientResponse.HttpClientResponse): Effect.Effect<void> =>
  // No body at all (HEAD, `Content-Length: 0`: most write answers): nothing to drain.
  response.request.method === "HEAD" || declaredLength(response) === 0
    ? Effect.void
    : Effect.ignore(Effect.timeout(Stream.runDrain(Stream.take(response.stream, 1 << 20)), skimTimeout(response)))

// Bodies we only skim (error bodies, token answers, bodies we discard) are read within the request
// timeout of the exchange that produced them: a body that stalls must not hang the caller (the
// bodies callers consume are bounded by their own idle timeout).
const skimTimeouts = new WeakMap<HttpClientResponse.HttpClientResponse, Duration.Duration>()
const skimTimeout = (response: HttpClientResponse.HttpClientResponse): Duration.Duration =>
  skimTimeouts.get(response) ?? Duration.seconds(60)

// `Content-Length`, when the response has a valid one.
const declaredLength = (response: HttpClientResponse.HttpClientResponse): number | undefined => {
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
const causeCode = (error: HttpClientError.HttpClientError): string | undefined => {
  const cause = error.cause as { code?: unknown; cause?: { code?: unknown } } | undefined
  return typeof cause?.code === "string"
    ? cause.code
    : typeof cause?.cause?.code === "string"
    ? cause.cause.code
    : undefined
}

// A short, credential-free description of a transport failure (the cause's code, e.g. ECONNRESET).
const transportReason = (error: HttpClientError.HttpClientError): string => {
  const code = causeCode(error)
  const what = error._tag === "RequestError" ? "request failed" : "response failed"
  return `${describe(error.request.method, new URL(error.request.url))}: ${what}${code === undefined ? "" : ` (${code})`}`
}

// OpenSSL certificate verification codes (as Node reports them) and Node's hostname check.
const certificateCodes = /^(UNABLE_TO_(GET|VERIFY|DECRYPT)_|CERT_|SELF_SIGNED_CERT|DEPTH_ZERO_SELF_SIGNED_CERT|INVALID_CA|HOSTNAME_MISMATCH|ERR_TLS_CERT_ALTNAME_INVALID)/

/**
 * A TLS failure that retrying cannot fix (an untrusted or mismatched certificate, or TLS spoken to
 * a plain-http server), described with what to change; undefined for anything else.
 */
const tlsFailure = (error: HttpClientError.HttpClientError): string | undefined => {
  const code = causeCode(error)
  if (code === undefined || error._tag !== "RequestError") return undefined
  const where = describe(error.request.method, new URL(error.request.url))
  if (certificateCodes.test(code)) {
    return `${where}: the registry's TLS certificate is not trusted (${code}); ` +
      "add its CA with caFile, or disable verification with insecure"
  }
  if (code === "ERR_SSL_WRONG_VERSION_NUMBER") {
    return `${where}: TLS handshake failed (${code}); the registry may only speak plain http`
  }
  return undefined
}
