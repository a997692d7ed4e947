/**
 * Request bodies, response shapes and the mapping of store errors to HTTP statuses.
 *
 * Error bodies are `{ "error": "...", "tag": "..." }`; lock conflicts on LOCK/UNLOCK/DELETE answer
 * with the holder's LockInfo instead, the only body Terraform and OpenTofu ever show.
 *
 * @internal
 */
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"
import * as Crypto from "node:crypto"
import type {
  CorruptState,
  CredentialsError,
  InconsistentRead,
  InvalidReference,
  LockConflict,
  LockIdMismatch,
  LockLost,
  RegistryError,
  StateTooLarge,
  TransientRegistry,
  Unauthorized,
  Unsupported
} from "../../Errors.js"
import * as LockInfo from "../../LockInfo.js"

/** Malformed input: 400. @internal */
export class BadRequest extends Data.TaggedError("BadRequest")<{ readonly reason: string }> {}

/** A request body over the server's limit: 413. @internal */
export class PayloadTooLarge extends Data.TaggedError("PayloadTooLarge")<{ readonly limit: number }> {}

/** @internal */
export type HandlerError =
  | BadRequest
  | PayloadTooLarge
  | TransientRegistry
  | InconsistentRead
  | RegistryError
  | Unauthorized
  | CredentialsError
  | InvalidReference
  | CorruptState
  | Unsupported
  | StateTooLarge
  | LockConflict
  | LockIdMismatch
  | LockLost

/** @internal */
export const md5 = (data: Uint8Array): Buffer => Crypto.createHash("md5").update(data).digest()

/** @internal */
export const md5Base64 = (data: Uint8Array): string => md5(data).toString("base64")

/** How much of an over-limit body (without a `Content-Length` saying so) is read and discarded. */
const drainLimit = 1024 * 1024

const base64Pattern = /^[A-Za-z0-9+/]{22}==$/

/**
 * Read the whole body, refusing more than `limit` bytes (from `Content-Length` before reading, and
 * while reading), and check `Content-MD5` when the client sent one.
 *
 * @internal
 */
export const readBody = (
  request: HttpServerRequest.HttpServerRequest,
  limit: number
): Effect.Effect<Uint8Array, BadRequest | PayloadTooLarge> =>
  Effect.gen(function*() {
    const declared = request.headers["content-length"]
    if (declared !== undefined && /^[0-9]+$/.test(declared) && Number(declared) > limit) {
      return yield* new PayloadTooLarge({ limit })
    }
    const chunks: Array<Uint8Array> = []
    let total = 0
    // Over the limit, the rest is drained (up to `drainLimit`) so that the 413 reaches the client:
    // failing the stream would destroy the socket before any response is written.
    yield* Stream.runForEach(request.stream, (chunk) =>
      Effect.suspend(() => {
        total += chunk.byteLength
        if (total > limit + drainLimit) return Effect.fail(new PayloadTooLarge({ limit }))
        if (total <= limit) chunks.push(chunk)
        return Effect.void
      })).pipe(
        Effect.catchTag("RequestError", () => Effect.fail(new BadRequest({ reason: "the request body could not be read" })))
      )
    if (total > limit) return yield* new PayloadTooLarge({ limit })
    const body = chunks.length === 1 ? chunks[0]! : new Uint8Array(Buffer.concat(chunks, total))
    const claimed = request.headers["content-md5"]
    if (claimed !== undefined) {
      const trimmed = claimed.trim()
      if (!base64Pattern.test(trimmed)) {
        return yield* new BadRequest({ reason: "Content-MD5 is not the base64 of a 16-byte MD5" })
      }
      if (trimmed !== md5Base64(body)) {
        return yield* new BadRequest({ reason: "Content-MD5 does not match the body" })
      }
    }
    return body
  })

/** @internal */
export const json = (body: unknown, status = 200, headers: Record<string, string> = {}) =>
  HttpServerResponse.text(JSON.stringify(body), { status, headers, contentType: "application/json" })

/** @internal */
export const errorResponse = (status: number, tag: string, error: string, headers: Record<string, string> = {}) =>
  json({ error, tag }, status, headers)

/** A LockInfo body (200 on LOCK, 423/409 with the holder on conflicts). @internal */
export const lockInfoResponse = (info: LockInfo.LockInfo, status: number) =>
  HttpServerResponse.text(LockInfo.toJson(info), { status, contentType: "application/json" })

/** State bytes, with a valid `Content-MD5`. @internal */
export const stateResponse = (
  payload: { readonly data: Uint8Array; readonly digest: string; readonly version: number | undefined }
) =>
  HttpServerResponse.uint8Array(payload.data, {
    status: 200,
    contentType: "application/json",
    headers: {
      "content-md5": Buffer.from(md5(payload.data)).toString("base64"),
      "etag": JSON.stringify(payload.digest),
      "cache-control": "no-store",
      ...(payload.version === undefined ? {} : { "x-oras-state-version": String(payload.version) })
    }
  })

/** @internal */
export const methodNotAllowed = (method: string, allowed: ReadonlyArray<string>) =>
  errorResponse(405, "MethodNotAllowed", `method ${method} is not allowed here; allowed: ${allowed.join(", ")}`, {
    allow: allowed.join(", ")
  })

/** @internal */
export const retryAfterSeconds = (millis: number | undefined, fallbackSeconds: number): string =>
  String(Math.max(1, millis === undefined || !Number.isFinite(millis) ? fallbackSeconds : Math.ceil(millis / 1000)))

/**
 * The response for a failure. Transient registry trouble is the only cause of 429/503 (the
 * statuses the clients retry, honouring `Retry-After`); everything the client cannot fix by
 * retrying is a 4xx, or a 5xx naming the upstream problem.
 *
 * @internal
 */
export const errorToResponse = (error: HandlerError, retryAfter: number): HttpServerResponse.HttpServerResponse => {
  switch (error._tag) {
    case "BadRequest":
      return errorResponse(400, "BadRequest", error.reason)
    case "PayloadTooLarge":
      return errorResponse(413, "PayloadTooLarge", `the request body is larger than ${error.limit} bytes`)
    case "StateTooLarge":
      return errorResponse(413, error._tag, error.message)
    case "TransientRegistry": {
      const status = error.status === 429 ? 429 : 503
      return errorResponse(status, error._tag, `the registry is temporarily unavailable, retry later: ${error.message}`, {
        "retry-after": retryAfterSeconds(error.retryAfterMillis, retryAfter)
      })
    }
    case "InconsistentRead":
      return errorResponse(503, error._tag, `${error.message}; retry later`, {
        "retry-after": retryAfterSeconds(undefined, retryAfter)
      })
    case "Unauthorized":
    case "CredentialsError":
      return errorResponse(502, error._tag, `the server could not authenticate to the registry: ${error.message}`)
    case "RegistryError":
      return errorResponse(502, error._tag, `the registry refused the request: ${error.message}`)
    case "CorruptState":
      return errorResponse(500, error._tag, error.message)
    case "Unsupported":
      return errorResponse(501, error._tag, error.message)
    case "InvalidReference":
      return error.kind === "workspace"
        ? errorResponse(400, error._tag, error.message)
        : error.kind === "reference"
        ? errorResponse(404, error._tag, error.message)
        : errorResponse(500, error._tag, error.message)
    case "LockConflict":
      return lockInfoResponse(error.info, 423)
    case "LockLost":
    case "LockIdMismatch":
      return errorResponse(409, error._tag, error.message)
  }
}
