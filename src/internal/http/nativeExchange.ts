/**
 * HTTP exchanges straight on an undici `Dispatcher`, for `HttpRegistry.layerNode`.
 *
 * Why not `HttpClient`: the platform client is the right interface for applications (and
 * `HttpRegistry.layer` runs on any of them), but each request through it costs ~150 Effect
 * operations (request building, URL re-parsing, an `AbortController`, a finalizer registration,
 * a wrapper per response, a cached effect per body read) before undici sees it. On a loopback
 * registry that was as much time as the request itself, and its garbage made V8 collect the old
 * generation every few requests; a state backend is measured against a raw client doing the same
 * requests (design §8). Here a request is one `Effect.async` around undici's own `request`, and
 * the response keeps its Node `Readable`, which `body.ts` reads into a buffer while hashing.
 *
 * Everything above the exchange — authentication, redirects, credentials kept on their origin,
 * tracing, retries, error mapping — is the transport's, shared with the `HttpClient` path.
 * Timeouts are the dispatcher's (`headersTimeout`, `bodyTimeout`; see `HttpRegistry`).
 *
 * @internal
 */
import * as NodeStream from "@effect/platform-node/NodeStream"
import type * as Undici from "@effect/platform-node/Undici"
import * as Effect from "effect/Effect"
import type * as Stream from "effect/Stream"
import { Readable } from "node:stream"

/** A body that failed in transit; `cause` as undici reported it. @internal */
export interface BodyFailure {
  readonly _tag: "BodyFailure"
  readonly cause: unknown
}

/** @internal */
export const bodyFailure = (cause: unknown): BodyFailure => ({ _tag: "BodyFailure", cause })

/** A request that got no response; `cause` as undici reported it. @internal */
export interface ExchangeFailure {
  readonly _tag: "ExchangeFailure"
  readonly cause: unknown
}

/** @internal */
export interface NativeRequest {
  readonly method: string
  readonly url: URL
  readonly headers: Readonly<Record<string, string>>
  /** Sent with the `content-length` of its bytes (a list of chunks is written in order). */
  readonly body?: Uint8Array | ReadonlyArray<Uint8Array> | undefined
}

const ignoreError = () => {}

/**
 * A response of a native exchange: what the transport and the registry read of any response.
 *
 * @internal
 */
export class NativeResponse {
  constructor(
    readonly request: { readonly method: string; readonly url: string },
    readonly status: number,
    readonly headers: Readonly<Record<string, string>>,
    readonly readable: Undici.Dispatcher.ResponseData["body"]
  ) {
    // A body nobody is reading may still fail (a body timeout, an abort, a reset): without a
    // listener that 'error' would take the process down. Readers attach their own.
    readable.on("error", ignoreError)
  }

  get stream(): Stream.Stream<Uint8Array, BodyFailure> {
    return NodeStream.fromReadable<BodyFailure, Uint8Array>(() => this.readable, bodyFailure)
  }

  get arrayBuffer(): Effect.Effect<ArrayBuffer, BodyFailure> {
    return Effect.tryPromise({ try: () => this.readable.arrayBuffer(), catch: bodyFailure })
  }
}

/** @internal */
export type Exchange = (request: NativeRequest) => Effect.Effect<NativeResponse, ExchangeFailure>

/** @internal */
export const makeExchange = (dispatcher: Undici.Dispatcher): Exchange => (request) =>
  Effect.async<NativeResponse, ExchangeFailure>((resume) => {
    // Interrupted before the response head: the request is aborted (and its connection with it).
    const controller = new AbortController()
    const body = request.body
    const headers = body === undefined
      ? request.headers
      : { ...request.headers, "content-length": String(bodyLength(body)) }
    dispatcher.request({
      origin: request.url.origin,
      path: `${request.url.pathname}${request.url.search}`,
      method: request.method as Undici.Dispatcher.HttpMethod,
      headers,
      // A list of chunks (a gzip state as zlib produced it) is written in order, not joined.
      body: body === undefined ? null : body instanceof Uint8Array ? body : Readable.from(body, { objectMode: false }),
      signal: controller.signal
    }).then(
      (data) =>
        resume(Effect.succeed(
          new NativeResponse(
            { method: request.method, url: request.url.href },
            data.statusCode,
            flattenHeaders(data.headers),
            data.body
          )
        )),
      (cause: unknown) => resume(Effect.fail({ _tag: "ExchangeFailure", cause }))
    )
    return Effect.sync(() => controller.abort())
  })

// Indexed, not iterated: a caller may watch its body's iteration (upload progress).
const bodyLength = (body: Uint8Array | ReadonlyArray<Uint8Array>): number => {
  if (body instanceof Uint8Array) return body.byteLength
  let size = 0
  for (let i = 0; i < body.length; i++) size += body[i]!.byteLength
  return size
}

// undici gives repeated headers as arrays; one value per name, as the platform's `Headers` do.
const flattenHeaders = (headers: Record<string, string | Array<string> | undefined>): Record<string, string> => {
  const out: Record<string, string> = {}
  for (const name in headers) {
    const value = headers[name]
    if (value !== undefined) out[name] = Array.isArray(value) ? value.join(", ") : value
  }
  return out
}
