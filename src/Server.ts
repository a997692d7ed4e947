/**
 * `oras-state serve`: a Terraform/OpenTofu `http` backend server in front of `StateBackend`, so
 * stock `terraform` and `tofu` binaries keep their state in an OCI registry (or the embedded
 * OCI-layout store) with no plugin and no fork. Protocol facts: research/peers.md §2.
 *
 * ## URL space
 * | path | methods |
 * |---|---|
 * | `/healthz` | GET: `{"status":"ok"}` (no auth, no registry access) |
 * | `/state` | GET: the workspaces, a JSON array of names |
 * | `/state/<ws>` | GET state; POST/PUT write; LOCK/UNLOCK (for `lock_address = address`); DELETE the workspace |
 * | `/state/<ws>/lock` | LOCK, POST, PUT: lock; UNLOCK, DELETE: unlock (GitLab-style configs); GET: the holder |
 * | `/state/<ws>/versions` | GET: `[{version, digest, size, updatedAt, current}]` |
 * | `/state/<ws>/versions/<n>` | GET: the bytes of version n |
 * | `/state/<ws>/versions/<n>/restore` | POST `[?ID=<lock>]`: roll forward to the bytes of version n |
 *
 * `<ws>` is one path segment, percent-decoded: a workspace name containing `/` is written `%2F`
 * (`/state/team%2Fprod`). Empty names are refused (400). One trailing slash is ignored.
 *
 * ## Protocol decisions
 * - **Never a redirect**, on any path.
 * - **GET** answers 200 with the state bytes, `Content-Type: application/json`, a valid
 *   `Content-MD5`, `ETag` (the manifest digest) and `X-Oras-State-Version`; **204** when the
 *   workspace has no state (both clients read 204 as "no state"; 404 is kept for unknown paths).
 * - **Writes** (POST or PUT): 200 with `{"version","digest"}`. With `?ID=<lock>` the write is fenced:
 *   it lands only while that lock is held, else 409. Without `ID` (`-lock=false`, or no
 *   `lock_address`) the write is accepted while the workspace is unlocked and refused with 409
 *   while anyone holds the lock (GitLab's policy). A retried fenced write (same lock, same bytes,
 *   lock still held) answers 200 without writing a duplicate version. An empty body or one that
 *   is not a JSON object is refused (400); a `Content-MD5` that does not match the body is 400.
 * - **LOCK** answers 200 only on success (body: the LockInfo), 423 with the holder's LockInfo on
 *   conflict (what `-lock-timeout` parses), and 200 when the current holder's ID asks again (a
 *   retry after a lost response, even to a restarted server).
 * - **UNLOCK**: an empty body is Terraform's force-unlock (the typed ID is never sent): whatever is
 *   held is removed, 200 (body: the removed LockInfo, if any). A LockInfo with only an `ID` and
 *   Go's zero `Created` (`0001-01-01T00:00:00Z`) is OpenTofu's force-unlock: removed if the ID
 *   matches, logged as a force-unlock. Any other LockInfo with an `ID` is a normal unlock: 200 if
 *   the ID matches or the lock is no longer held (including an ID released recently, whose UNLOCK
 *   is retried after someone else locked), else 409 with the holder's LockInfo. A LockInfo without
 *   `ID` is 400. Both clients send the LockInfo of a normal unlock; only Terraform force-unlocks
 *   with an empty body (research/peers.md §2.5).
 * - **DELETE `/state/<ws>`** deletes the workspace (state, versions, lock tags); `default` is refused
 *   (403) and a locked workspace answers 423 with the holder. It takes no body: a DELETE with a body
 *   or a `Content-MD5` is an UNLOCK sent to the wrong address and is refused (400).
 * - **Errors** are JSON `{"error","tag"}`, except the LockInfo bodies of LOCK/UNLOCK/DELETE
 *   conflicts (writes refused for a lock answer `{"error","tag":"Locked"|"LockLost","lock"?}`).
 *   Transient registry trouble (`TransientRegistry`, `InconsistentRead`) is 503, or 429 when the
 *   registry said 429, with `Retry-After` (the registry's, else `retryAfter`); these are the only
 *   statuses the clients retry usefully. `StateTooLarge` and bodies over `maxBodySize` are 413;
 *   registry authentication failures 502 (no secrets in the message); other registry refusals 502;
 *   unsupported registry operations 501; corrupt content 500; malformed input 400.
 * - **Basic auth** (optional): every path but `/healthz`; 401 with
 *   `WWW-Authenticate: Basic realm="oras-state"`; user and password compared in constant time.
 * - **Leases**: the server holds no lock of its own and renews nothing. With a backend `lockTtl`,
 *   a lock taken through the server expires after it (the holder's later writes then fail with
 *   409); run the server with `lock_ttl = 0` (the default) or a TTL longer than any apply.
 * - **Logging**: one line per request (method, path, status, milliseconds); never bodies, query
 *   strings or `Authorization`.
 * - **Shutdown**: on interruption the listener closes, idle connections are closed, in-flight
 *   requests finish (up to `shutdownTimeout`) with `Connection: close`, and requests arriving on
 *   open connections meanwhile get 503 + `Retry-After`. No lock is released: locks belong to the
 *   Terraform clients.
 *
 * @since 0.1.0
 */
import * as HttpApp from "@effect/platform/HttpApp"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import * as Clock from "effect/Clock"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as Http from "node:http"
import { TypeId } from "./Errors.js"
import * as internal from "./internal/server/app.js"
import { errorResponse } from "./internal/server/http.js"
import { pathOf } from "./internal/server/routes.js"
import type { StateBackend } from "./StateBackend.js"

/**
 * The server could not start: the address is in use, not permitted, or the options are invalid.
 *
 * @since 0.1.0
 * @category errors
 */
export class ServeError extends Schema.TaggedError<ServeError>("oras-state/ServeError")("ServeError", {
  address: Schema.String,
  reason: Schema.String
}) {
  readonly [TypeId]: TypeId = TypeId
  override get message(): string {
    return `cannot serve on ${this.address}: ${this.reason}`
  }
}

/**
 * Options of the HTTP application itself.
 *
 * @since 0.1.0
 * @category models
 */
export interface AppOptions {
  /** Require HTTP Basic auth from clients (Terraform's `username` / `password`). */
  readonly auth?: {
    readonly username: string
    readonly password: Redacted.Redacted<string>
  } | undefined
  /** Largest request body accepted (default 256 MiB, the store's default `maxStateSize`). */
  readonly maxBodySize?: number | undefined
  /** `Retry-After` when the registry named none (default 1 second). */
  readonly retryAfter?: Duration.DurationInput | undefined
}

/**
 * @since 0.1.0
 * @category models
 */
export interface ServeOptions extends AppOptions {
  /** Interface to listen on (default `127.0.0.1`). */
  readonly host?: string | undefined
  /** Port (default 8080; 0 picks a free one, see `Running.port`). */
  readonly port?: number | undefined
  /** How long shutdown waits for in-flight requests (default 30 seconds). */
  readonly shutdownTimeout?: Duration.DurationInput | undefined
}

/**
 * A listening server.
 *
 * @since 0.1.0
 * @category models
 */
export interface Running {
  /** `http://host:port`, the base to give `backendBlock`. */
  readonly url: string
  readonly host: string
  readonly port: number
}

/**
 * The Terraform `http` backend protocol as an `HttpApp`, with the given options.
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeApp: (options?: AppOptions) => HttpApp.Default<never, StateBackend> = internal.makeApp

/**
 * The application without auth and with the default limits.
 *
 * @since 0.1.0
 * @category constructors
 */
export const app: HttpApp.Default<never, StateBackend> = makeApp()

/**
 * @since 0.1.0
 * @category constants
 */
export const defaultHost = "127.0.0.1"

/**
 * @since 0.1.0
 * @category constants
 */
export const defaultPort = 8080

const formatHostPort = (host: string, port: number) => `${host.includes(":") ? `[${host}]` : host}:${port}`

const describeListenError = (cause: unknown): string => {
  const code = typeof cause === "object" && cause !== null && "code" in cause ? String(cause.code) : undefined
  switch (code) {
    case "EADDRINUSE":
      return "the address is already in use"
    case "EACCES":
      return "permission denied"
    case "EADDRNOTAVAIL":
      return "the address is not available on this machine"
    default:
      return cause instanceof Error ? cause.message : String(cause)
  }
}

// In-flight requests, tracked at the socket level: a response counts until it has been written.
class Tracker {
  draining = false
  readonly active = new Set<Http.ServerResponse>()
  private onIdle: (() => void) | undefined

  attach(server: Http.Server) {
    server.on("request", (_request: Http.IncomingMessage, response: Http.ServerResponse) => {
      this.active.add(response)
      if (this.draining && !response.headersSent) response.setHeader("connection", "close")
      response.on("close", () => {
        this.active.delete(response)
        if (this.active.size === 0) this.onIdle?.()
      })
    })
  }

  readonly idle: Effect.Effect<void> = Effect.async<void>((resume) => {
    if (this.active.size === 0) return resume(Effect.void)
    this.onIdle = () => resume(Effect.void)
    return Effect.sync(() => {
      this.onIdle = undefined
    })
  })
}

// One log line per request; during shutdown, new requests get 503 and every response closes its
// connection.
const served = <E, R>(
  self: HttpApp.Default<E, R>,
  tracker: Tracker,
  retryAfter: number
): HttpApp.Default<E, R> =>
  Effect.gen(function*() {
    const request = yield* HttpServerRequest.HttpServerRequest
    const started = yield* Clock.currentTimeMillis
    const line = (status: number | string) =>
      Effect.flatMap(Clock.currentTimeMillis, (now) =>
        Effect.log(`${request.method} ${pathOf(request.originalUrl)} ${status} ${now - started}ms`))
    const response = tracker.draining
      ? errorResponse(503, "ShuttingDown", "the server is shutting down, retry later", {
        "retry-after": String(retryAfter)
      })
      : yield* Effect.onInterrupt(self, () => line("aborted"))
    const final = tracker.draining ? HttpServerResponse.setHeader(response, "connection", "close") : response
    yield* line(final.status)
    return final
  })

/**
 * Start serving on `options.host:options.port` until the scope closes; returns where it listens.
 * Closing the scope shuts down gracefully (see the module documentation).
 *
 * @since 0.1.0
 * @category constructors
 */
export const start = (options: ServeOptions = {}): Effect.Effect<Running, ServeError, StateBackend | Scope.Scope> =>
  Effect.gen(function*() {
    const host = options.host ?? defaultHost
    const port = options.port ?? defaultPort
    const requested = formatHostPort(host, port)
    if (!Number.isInteger(port) || port < 0 || port > 65535) {
      return yield* new ServeError({ address: requested, reason: "the port must be an integer from 0 to 65535" })
    }
    if (options.auth !== undefined && options.auth.username === "") {
      return yield* new ServeError({
        address: requested,
        reason: "auth.username must not be empty (Terraform sends Basic credentials only with a username)"
      })
    }
    const retryAfter = Math.max(1, Math.ceil(Duration.toSeconds(options.retryAfter ?? Duration.seconds(1))))
    const shutdownTimeout = options.shutdownTimeout ?? Duration.seconds(30)
    const tracker = new Tracker()
    let nodeServer: Http.Server | undefined
    const server = yield* NodeHttpServer.make(() => {
      nodeServer = Http.createServer()
      tracker.attach(nodeServer)
      return nodeServer
    }, { host, port }).pipe(
      Effect.mapError((error) => new ServeError({ address: requested, reason: describeListenError(error.cause) }))
    )
    yield* server.serve(served(makeApp(options), tracker, retryAfter))
    // Runs before the handler is detached and before the platform closes the listener.
    yield* Effect.addFinalizer(() =>
      Effect.gen(function*() {
        const node = nodeServer
        if (node === undefined) return
        tracker.draining = true
        for (const response of tracker.active) if (!response.headersSent) response.setHeader("connection", "close")
        const closed = yield* Deferred.make<void>()
        node.close(() => Deferred.unsafeDone(closed, Exit.void))
        node.closeIdleConnections()
        if (tracker.active.size > 0) {
          yield* Effect.log(`shutting down: waiting for ${tracker.active.size} in-flight request(s)`)
        }
        const finished = yield* Effect.timeout(tracker.idle, shutdownTimeout).pipe(Effect.option)
        if (Option.isNone(finished)) {
          yield* Effect.logWarning(
            `shutting down: ${tracker.active.size} request(s) still in flight after ${
              Duration.format(Duration.decode(shutdownTimeout))
            }; closing their connections`
          )
        }
        node.closeAllConnections()
        yield* Effect.timeout(Deferred.await(closed), Duration.seconds(2)).pipe(Effect.ignore)
      })
    )
    const address = server.address
    const running: Running = address._tag === "TcpAddress"
      ? { host: address.hostname, port: address.port, url: `http://${formatHostPort(address.hostname, address.port)}` }
      : { host, port, url: `http://${requested}` }
    yield* Effect.log(`oras-state: Terraform http backend listening on ${running.url}`)
    return running
  })

/**
 * Serve until the layer is released (e.g. `Layer.launch(Server.layer(options).pipe(Layer.provide(backend)))`).
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: ServeOptions = {}): Layer.Layer<never, ServeError, StateBackend> =>
  Layer.scopedDiscard(start(options))

/**
 * @since 0.1.0
 * @category models
 */
export interface BackendBlockOptions {
  /** Workspace the block points at (default `default`). */
  readonly workspace?: string | undefined
  /** The Basic auth user, when the server requires auth (the password is never printed). */
  readonly username?: string | undefined
  /**
   * `"lock"` (default): LOCK/UNLOCK, Terraform's defaults. `"post"`: POST/DELETE on the lock
   * address, for proxies and CDNs that reject custom verbs (GitLab-style).
   */
  readonly methods?: "lock" | "post" | undefined
}

const hclString = (s: string) =>
  `"${s.replace(/\\/g, "\\\\").replace(/"/g, "\\\"").replace(/\n/g, "\\n").replace(/\r/g, "\\r").replace(/\t/g, "\\t")
    .replace(/\$\{/g, () => "$${").replace(/%\{/g, () => "%%{")}"`

/**
 * The `terraform { backend "http" { … } }` block to paste, for a server at `url` (its base, e.g.
 * `Running.url`, or the address clients reach it by).
 *
 * @since 0.1.0
 * @category utils
 */
export const backendBlock = (url: string, options: BackendBlockOptions = {}): string => {
  const base = url.replace(/\/+$/, "")
  const address = `${base}/state/${encodeURIComponent(options.workspace ?? "default")}`
  const post = options.methods === "post"
  const attributes: Array<readonly [string, string]> = [
    ["address", hclString(address)],
    ["lock_address", hclString(`${address}/lock`)],
    ["unlock_address", hclString(`${address}/lock`)],
    ["lock_method", hclString(post ? "POST" : "LOCK")],
    ["unlock_method", hclString(post ? "DELETE" : "UNLOCK")]
  ]
  if (options.username !== undefined && options.username !== "") {
    attributes.push(["username", hclString(options.username)])
  }
  const width = Math.max(...attributes.map(([key]) => key.length))
  const lines = attributes.map(([key, value]) => `    ${key.padEnd(width)} = ${value}`)
  if (options.username !== undefined && options.username !== "") {
    lines.push(`    # password: set TF_HTTP_PASSWORD in the environment (never commit it)`)
  }
  return [`terraform {`, `  backend "http" {`, ...lines, `  }`, `}`, ``].join("\n")
}
