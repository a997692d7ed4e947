/**
 * The HTTP application: Terraform's `http` backend protocol (research/peers.md §2) in front of
 * `StateBackend`. See `Server.ts` for the protocol decisions.
 *
 * @internal
 */
import * as HttpApp from "@effect/platform/HttpApp"
import * as HttpRouter from "@effect/platform/HttpRouter"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as Cause from "effect/Cause"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import { LockConflict } from "../../Errors.js"
import * as LockInfo from "../../LockInfo.js"
import { defaultMaxStateSize, type PutResult, StateBackend, type StateManager } from "../../StateBackend.js"
import type * as StateBackendModule from "../../StateBackend.js"
import { type BasicAuth, challenge, makeBasicAuth } from "./auth.js"
import {
  BadRequest,
  errorResponse,
  errorToResponse,
  type HandlerError,
  json,
  lockInfoResponse,
  md5Base64,
  methodNotAllowed,
  readBody,
  stateResponse
} from "./http.js"
import { lockIdOf, parseRoute, pathOf } from "./routes.js"

/** @internal */
export interface AppOptions {
  readonly auth?: BasicAuth | undefined
  readonly maxBodySize?: number | undefined
  readonly retryAfter?: Duration.DurationInput | undefined
}

/** Lock bodies are small; anything larger is not a LockInfo. */
const lockBodyLimit = 64 * 1024

/** Lock IDs remembered per workspace after their release (answers retried UNLOCKs with 200). */
const releasedMemory = 32

/** Go's zero `time.Time`, as OpenTofu's force-unlock LockInfo carries it. */
const isZeroTime = (created: string) => created.startsWith("0001-01-01T00:00:00")

/**
 * OpenTofu ≥ 1.10 force-unlock: a LockInfo carrying only the ID the user typed.
 *
 * @internal
 */
export const isForceUnlockInfo = (info: LockInfo.LockInfo): boolean =>
  info.ID !== "" && info.Operation === "" && info.Who === "" && info.Version === "" && info.Info === "" &&
  isZeroTime(info.Created)

const decodeLockInfo = Schema.decodeUnknownEither(LockInfo.LockInfoFromJson)

const utf8 = (bytes: Uint8Array) => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("utf8")

const parseLockInfo = (body: Uint8Array): Effect.Effect<LockInfo.LockInfo, BadRequest> => {
  const text = utf8(body)
  if (text.trim() === "") return Effect.fail(new BadRequest({ reason: "a LockInfo JSON body is required" }))
  const decoded = decodeLockInfo(text)
  return decoded._tag === "Right"
    ? Effect.succeed(decoded.right)
    : Effect.fail(new BadRequest({ reason: "the body is not a LockInfo JSON object" }))
}

// A state is a JSON object; anything else is refused before it reaches the registry.
const looksLikeJsonObject = (body: Uint8Array): boolean => {
  let i = body[0] === 0xef && body[1] === 0xbb && body[2] === 0xbf ? 3 : 0 // UTF-8 byte-order mark
  while (i < body.byteLength && (body[i] === 0x20 || body[i] === 0x09 || body[i] === 0x0a || body[i] === 0x0d)) i++
  return body[i] === 0x7b
}

/** What the server remembers per backend, to make retried requests idempotent. */
interface Memory {
  /** The last fenced write per workspace, to answer its retry without writing a duplicate version. */
  readonly lastWrite: Map<string, { readonly lockId: string; readonly md5: string; readonly result: PutResult }>
  /** Recently released lock IDs per workspace. */
  readonly released: Map<string, Array<string>>
}

// An empty 200 with an explicit length (not a chunked empty body).
const ok = () => HttpServerResponse.empty({ status: 200, headers: { "content-length": "0" } })

const allowed = {
  workspaces: ["GET"],
  state: ["GET", "POST", "PUT", "DELETE", "LOCK", "UNLOCK"],
  lock: ["GET", "LOCK", "UNLOCK", "POST", "PUT", "DELETE"],
  versions: ["GET"],
  restore: ["POST"]
} as const

/**
 * @internal
 */
export const makeApp = (options: AppOptions = {}): HttpApp.Default<never, StateBackend> => {
  const maxBodySize = options.maxBodySize === undefined || options.maxBodySize <= 0
    ? defaultMaxStateSize
    : options.maxBodySize
  const retryAfter = Math.max(1, Math.ceil(Duration.toSeconds(options.retryAfter ?? Duration.seconds(1))))
  const authorized = options.auth === undefined ? undefined : makeBasicAuth(options.auth)
  const memories = new WeakMap<StateBackendModule.Service, Memory>()
  const memoryOf = (backend: StateBackendModule.Service): Memory => {
    let memory = memories.get(backend)
    if (memory === undefined) {
      memory = { lastWrite: new Map(), released: new Map() }
      memories.set(backend, memory)
    }
    return memory
  }

  const rememberReleased = (memory: Memory, workspace: string, id: string) => {
    const list = memory.released.get(workspace) ?? []
    if (!list.includes(id)) list.push(id)
    if (list.length > releasedMemory) list.splice(0, list.length - releasedMemory)
    memory.released.set(workspace, list)
    if (memory.lastWrite.get(workspace)?.lockId === id) memory.lastWrite.delete(workspace)
  }

  const written = (result: PutResult) => json({ version: result.version, digest: result.digest })

  // Writes without `?ID=` while someone holds the lock are refused (GitLab's policy): a client
  // running with `-lock=false` must not overwrite a locked apply.
  const lockedWrite = (sm: StateManager, info: LockInfo.LockInfo) =>
    json({
      error: `${new LockConflict({ workspace: sm.workspace, info }).message}; writes must carry ?ID=<lock ID>`,
      tag: "Locked",
      lock: info
    }, 409)

  const unlockedPolicy = (sm: StateManager, lockId: string | undefined) =>
    lockId !== undefined
      ? Effect.succeed(Option.none<HttpServerResponse.HttpServerResponse>())
      : Effect.map(sm.lockInfo, Option.map((held) => lockedWrite(sm, held.info)))

  const getState = (sm: StateManager) =>
    Effect.map(sm.get, (payload) =>
      Option.isNone(payload) ? HttpServerResponse.empty({ status: 204 }) : stateResponse(payload.value))

  const putState = (sm: StateManager, memory: Memory, request: HttpServerRequest.HttpServerRequest) =>
    Effect.gen(function*() {
      const lockId = lockIdOf(request.url)
      const body = yield* readBody(request, maxBodySize)
      if (body.byteLength === 0) return yield* new BadRequest({ reason: "the state body is empty" })
      if (!looksLikeJsonObject(body)) return yield* new BadRequest({ reason: "the state must be a JSON object" })
      return yield* Effect.uninterruptible(Effect.gen(function*() {
        const refused = yield* unlockedPolicy(sm, lockId)
        if (Option.isSome(refused)) return refused.value
        if (lockId === undefined) {
          memory.lastWrite.delete(sm.workspace)
          return written(yield* sm.put(body))
        }
        // A retried write (its response was lost): same lock, same bytes, lock still held, and
        // nobody else can have written meanwhile. Answer it without a duplicate version.
        const hash = md5Base64(body)
        const last = memory.lastWrite.get(sm.workspace)
        if (last !== undefined && last.lockId === lockId && last.md5 === hash) {
          const held = yield* sm.lockInfo
          if (Option.isSome(held) && held.value.info.ID === lockId) return written(last.result)
        }
        const result = yield* sm.put(body, { lockId })
        memory.lastWrite.set(sm.workspace, { lockId, md5: hash, result })
        return written(result)
      }))
    })

  const lock = (sm: StateManager, request: HttpServerRequest.HttpServerRequest) =>
    Effect.gen(function*() {
      const info = yield* Effect.flatMap(readBody(request, lockBodyLimit), parseLockInfo)
      return yield* sm.lock(info).pipe(
        Effect.map((id) => lockInfoResponse({ ...info, ID: id }, 200)),
        // The holder asking again (a retry after a lost response, possibly to a restarted server
        // or another replica) gets its 200; anyone else gets 423 and the holder's LockInfo.
        Effect.catchTag("LockConflict", (conflict) =>
          Effect.succeed(lockInfoResponse(conflict.info, info.ID !== "" && conflict.info.ID === info.ID ? 200 : 423))),
        Effect.uninterruptible
      )
    })

  // UNLOCK of `id` refused because another lock is current: if `id` was released recently (a
  // retry after a lost response) or nothing is held any more, the lock is not held: 200.
  const unlockMismatch = (sm: StateManager, memory: Memory, id: string) =>
    Effect.gen(function*() {
      if (memory.released.get(sm.workspace)?.includes(id) === true) return ok()
      const current = yield* sm.lockInfo
      if (Option.isNone(current)) return ok()
      return lockInfoResponse(current.value.info, 409)
    })

  const unlock = (sm: StateManager, memory: Memory, request: HttpServerRequest.HttpServerRequest) =>
    Effect.gen(function*() {
      const body = yield* readBody(request, lockBodyLimit)
      if (utf8(body).trim() === "") {
        // Terraform's force-unlock: the ID the user typed is never sent. Release whatever is held.
        return yield* sm.forceUnlock().pipe(
          Effect.tap((removed) =>
            Option.isNone(removed) ? Effect.void : Effect.gen(function*() {
              rememberReleased(memory, sm.workspace, removed.value.ID)
              yield* Effect.logWarning(
                `force-unlock of workspace ${JSON.stringify(sm.workspace)}: removed lock ${removed.value.ID} held by ${
                  removed.value.Who || "unknown"
                } for ${removed.value.Operation || "unknown operation"}`
              )
            })),
          Effect.map((removed) =>
            Option.isNone(removed) ? ok() : lockInfoResponse(removed.value, 200)),
          Effect.uninterruptible
        )
      }
      const info = yield* parseLockInfo(body)
      if (info.ID === "") {
        return yield* new BadRequest({ reason: "the LockInfo has no ID (send an empty body to force-unlock)" })
      }
      const force = isForceUnlockInfo(info)
      const release = force
        ? Effect.tap(sm.forceUnlock(info.ID), (removed) =>
          Option.isNone(removed) ? Effect.void : Effect.logWarning(
            `force-unlock of workspace ${JSON.stringify(sm.workspace)}: removed lock ${info.ID} held by ${
              removed.value.Who || "unknown"
            } for ${removed.value.Operation || "unknown operation"}`
          ))
        : sm.unlock(info.ID)
      return yield* release.pipe(
        Effect.map(() => {
          rememberReleased(memory, sm.workspace, info.ID)
          return ok()
        }),
        Effect.catchTag("LockIdMismatch", () => unlockMismatch(sm, memory, info.ID)),
        Effect.uninterruptible
      )
    })

  const lockStatus = (sm: StateManager) =>
    Effect.map(sm.lockInfo, (current) =>
      Option.isNone(current)
        ? HttpServerResponse.empty({ status: 204 })
        : lockInfoResponse(current.value.info, 200).pipe(
          current.value.expiresAt === undefined
            ? (r) => r
            : HttpServerResponse.setHeader("x-lock-expires-at", new Date(current.value.expiresAt).toISOString())
        ))

  const deleteWorkspace = (
    backend: StateBackendModule.Service,
    memory: Memory,
    workspace: string,
    request: HttpServerRequest.HttpServerRequest
  ) =>
    Effect.gen(function*() {
      // An UNLOCK misconfigured as `unlock_method = "DELETE"` on the state address carries a body
      // (or at least Terraform's Content-MD5 of an empty one): never let it delete the workspace.
      const body = yield* readBody(request, lockBodyLimit)
      if (body.byteLength > 0 || request.headers["content-md5"] !== undefined) {
        return yield* new BadRequest({
          reason: `DELETE on the state address deletes the workspace and takes no body; unlock at /state/${
            encodeURIComponent(workspace)
          }/lock`
        })
      }
      if (workspace === "default") {
        return errorResponse(403, "Forbidden", "the default workspace cannot be deleted")
      }
      yield* Effect.uninterruptible(backend.deleteWorkspace(workspace))
      memory.lastWrite.delete(workspace)
      memory.released.delete(workspace)
      return ok()
    })

  const versions = (sm: StateManager) =>
    Effect.map(sm.versions, (list) =>
      json(list.map((v) => ({
        version: v.version,
        digest: v.digest,
        size: v.size,
        updatedAt: v.updatedAt ?? null,
        current: v.current
      }))))

  const version = (sm: StateManager, n: number) =>
    Effect.map(sm.getVersion(n), (payload) =>
      Option.isNone(payload)
        ? errorResponse(404, "NotFound", `workspace ${JSON.stringify(sm.workspace)} has no version ${n}`)
        : stateResponse(payload.value))

  const restore = (sm: StateManager, memory: Memory, n: number, request: HttpServerRequest.HttpServerRequest) =>
    Effect.gen(function*() {
      const lockId = lockIdOf(request.url)
      yield* readBody(request, lockBodyLimit)
      return yield* Effect.uninterruptible(Effect.gen(function*() {
        const refused = yield* unlockedPolicy(sm, lockId)
        if (Option.isSome(refused)) return refused.value
        const result = yield* sm.restore(n, { lockId })
        memory.lastWrite.delete(sm.workspace)
        return json({ version: result.version, digest: result.digest, restoredFrom: n })
      }))
    })

  const handle = (
    request: HttpServerRequest.HttpServerRequest,
    backend: StateBackendModule.Service
  ): Effect.Effect<HttpServerResponse.HttpServerResponse, HandlerError> =>
    Effect.gen(function*() {
      const route = parseRoute(request.url)
      const method: string = request.method
      if (route._tag === "NotFound") return errorResponse(404, "NotFound", `no such resource: ${pathOf(request.url)}`)
      if (route._tag === "Invalid") return yield* new BadRequest({ reason: route.reason })
      if (route._tag === "Workspaces") {
        return method === "GET"
          ? json(yield* backend.workspaces)
          : methodNotAllowed(method, allowed.workspaces)
      }
      const sm = yield* backend.stateManager(route.workspace)
      const memory = memoryOf(backend)
      switch (route._tag) {
        case "State":
          switch (method) {
            case "GET":
              return yield* getState(sm)
            case "POST":
            case "PUT":
              return yield* putState(sm, memory, request)
            case "LOCK":
              return yield* lock(sm, request)
            case "UNLOCK":
              return yield* unlock(sm, memory, request)
            case "DELETE":
              return yield* deleteWorkspace(backend, memory, route.workspace, request)
          }
          return methodNotAllowed(method, allowed.state)
        case "Lock":
          switch (method) {
            case "GET":
              return yield* lockStatus(sm)
            case "LOCK":
            case "POST":
            case "PUT":
              return yield* lock(sm, request)
            case "UNLOCK":
            case "DELETE":
              return yield* unlock(sm, memory, request)
          }
          return methodNotAllowed(method, allowed.lock)
        case "Versions":
          return method === "GET" ? yield* versions(sm) : methodNotAllowed(method, allowed.versions)
        case "Version":
          return method === "GET" ? yield* version(sm, route.version) : methodNotAllowed(method, allowed.versions)
        case "Restore":
          return method === "POST" ? yield* restore(sm, memory, route.version, request) : methodNotAllowed(method, allowed.restore)
      }
    })

  const stateApp = Effect.gen(function*() {
    const request = yield* HttpServerRequest.HttpServerRequest
    const backend = yield* StateBackend
    return yield* handle(request, backend).pipe(
      Effect.catchAll((error) => Effect.succeed(errorToResponse(error, retryAfter)))
    )
  })

  const router = HttpRouter.empty.pipe(
    HttpRouter.get("/healthz", Effect.succeed(json({ status: "ok" }))),
    HttpRouter.mountApp("/state", stateApp, { includePrefix: true })
  )

  const routed = router.pipe(
    Effect.catchTag("RouteNotFound", (e) =>
      Effect.succeed(errorResponse(404, "NotFound", `no such resource: ${pathOf(e.request.url)}`)))
  )

  const guarded: HttpApp.Default<never, StateBackend> = Effect.gen(function*() {
    const request = yield* HttpServerRequest.HttpServerRequest
    if (authorized !== undefined && pathOf(request.url) !== "/healthz" && !authorized(request.headers.authorization)) {
      return errorResponse(401, "Unauthorized", "authentication required", { "www-authenticate": challenge })
    }
    return yield* routed
  }).pipe(
    Effect.catchAllCause((cause) =>
      Cause.isInterruptedOnly(cause)
        ? Effect.failCause(cause as Cause.Cause<never>)
        : Effect.as(
          Effect.logError("request failed unexpectedly", cause),
          errorResponse(500, "InternalError", "internal server error")
        ))
  )

  return guarded
}
