/**
 * Test support for the server: start `Server.start` on a free 127.0.0.1 port over a given backend
 * layer, capture its log lines, and a client that sends exactly what stock Terraform/OpenTofu's
 * `http` backend sends (research/peers.md §2): `Content-Type: application/json` and
 * `Content-MD5` on every request with a body (even Terraform's empty force-unlock body), Basic auth
 * on every request when a username is configured, `?ID=<lock>` on writes made under a lock, and
 * the same LockInfo bytes on UNLOCK as on LOCK.
 */
import { Cause, Context, Effect, Exit, Layer, Logger, Scope } from "effect"
import * as Crypto from "node:crypto"
import * as Server from "../../src/Server.js"
import * as StateBackend from "../../src/StateBackend.js"

const StateBackendTag = StateBackend.StateBackend

export interface TestServer<R> {
  readonly url: string
  readonly logs: Array<string>
  readonly context: Context.Context<R>
  readonly run: <A, E>(effect: Effect.Effect<A, E, R>) => Promise<A>
  readonly close: () => Promise<void>
}

const messageText = (message: unknown): string =>
  Array.isArray(message) ? message.map((m) => String(m)).join(" ") : String(message)

/** `Effect.runPromise`, rejecting with the failure itself rather than a `FiberFailure`. */
export const run = async <A, E>(effect: Effect.Effect<A, E>): Promise<A> => {
  const exit = await Effect.runPromiseExit(effect)
  if (Exit.isSuccess(exit)) return exit.value
  throw Cause.squash(exit.cause)
}

export const startServer = async <R = StateBackend.StateBackend>(
  backend: Layer.Layer<R, unknown>,
  options: Server.ServeOptions = {}
): Promise<TestServer<R>> => {
  const logs: Array<string> = []
  const logger = Logger.make(({ logLevel, message }) => {
    logs.push(`${logLevel.label} ${messageText(message)}`)
  })
  const scope = Effect.runSync(Scope.make())
  try {
    const context = await run(Layer.buildWithScope(backend, scope))
    const running = await run(
      Server.start({ port: 0, ...options }).pipe(
        Effect.provideService(
          StateBackendTag,
          Context.get(context as unknown as Context.Context<StateBackend.StateBackend>, StateBackendTag)
        ),
        Effect.provide(Logger.replace(Logger.defaultLogger, logger)),
        Scope.extend(scope)
      )
    )
    return {
      url: running.url,
      logs,
      context,
      run: (effect) => Effect.runPromise(Effect.provide(effect, context)),
      close: () => Effect.runPromise(Scope.close(scope, Exit.void))
    }
  } catch (error) {
    await Effect.runPromise(Scope.close(scope, Exit.void))
    throw error
  }
}

export const md5Base64 = (body: string | Uint8Array): string => Crypto.createHash("md5").update(body).digest("base64")

/** Go's `time.Time` in RFC 3339 with nanoseconds, as `LockInfo.Created` carries it. */
export const goNow = (): string => new Date().toISOString().replace(/\.(\d{3})Z$/, ".$1456789Z")

export interface Reply {
  readonly status: number
  readonly headers: Headers
  readonly body: Uint8Array
  readonly text: string
  readonly json: () => any
}

export interface ClientConfig {
  /** Server base URL; the client addresses `/state/<workspace>`. */
  readonly server: string
  readonly workspace?: string | undefined
  readonly dialect?: "terraform" | "tofu" | undefined
  /** `lock` (LOCK/UNLOCK, the defaults) or `post` (POST/DELETE, GitLab-style). */
  readonly methods?: "lock" | "post" | undefined
  /** Lock at the state address itself (`lock_address = address`). */
  readonly lockAtAddress?: boolean | undefined
  readonly updateMethod?: "POST" | "PUT" | undefined
  readonly username?: string | undefined
  readonly password?: string | undefined
  readonly who?: string | undefined
}

/** One Terraform/OpenTofu process talking to the server (a new one per CLI invocation). */
export class TfClient {
  readonly address: string
  readonly lockAddress: string
  lockId: string | undefined = undefined
  lockBody: string | undefined = undefined
  /** The LockInfo of the last LOCK attempt, successful or not (a retry resends it). */
  attemptedLockBody: string | undefined = undefined
  readonly sent: Array<{ method: string; url: string; headers: Record<string, string> }> = []

  constructor(readonly config: ClientConfig) {
    this.address = `${config.server}/state/${encodeURIComponent(config.workspace ?? "default")}`
    this.lockAddress = config.lockAtAddress === true ? this.address : `${this.address}/lock`
  }

  get dialect() {
    return this.config.dialect ?? "terraform"
  }

  async request(method: string, url: string, body?: string | Uint8Array): Promise<Reply> {
    const headers: Record<string, string> = { "user-agent": this.dialect === "tofu" ? "OpenTofu/1.10.0" : "Terraform/1.9.0" }
    if (this.config.username !== undefined && this.config.username !== "") {
      headers.authorization = `Basic ${Buffer.from(`${this.config.username}:${this.config.password ?? ""}`).toString("base64")}`
    }
    if (body !== undefined) {
      headers["content-type"] = "application/json"
      headers["content-md5"] = md5Base64(body)
    }
    this.sent.push({ method, url, headers })
    const response = await fetch(url, { method, headers, ...(body === undefined ? {} : { body: body as BodyInit }), redirect: "manual" })
    const bytes = new Uint8Array(await response.arrayBuffer())
    const text = Buffer.from(bytes).toString("utf8")
    return { status: response.status, headers: response.headers, body: bytes, text, json: () => JSON.parse(text) }
  }

  get(): Promise<Reply> {
    return this.request("GET", this.address)
  }

  /** LOCK with a fresh LockInfo, as `statemgr.NewLockInfo` builds it. */
  async lock(operation: string, id: string = Crypto.randomUUID()): Promise<Reply> {
    const body = JSON.stringify({
      ID: id,
      Operation: operation,
      Info: "",
      Who: this.config.who ?? "alice@workstation",
      Version: this.dialect === "tofu" ? "1.10.0" : "1.9.0",
      Created: goNow(),
      Path: ""
    })
    return this.lockWith(body)
  }

  /** LOCK with exactly these bytes (a retry resends them). */
  async lockWith(body: string): Promise<Reply> {
    this.attemptedLockBody = body
    const reply = await this.request(this.config.methods === "post" ? "POST" : "LOCK", this.lockAddress, body)
    if (reply.status === 200) {
      this.lockBody = body
      this.lockId = JSON.parse(body).ID
    }
    return reply
  }

  private get unlockMethod() {
    return this.config.methods === "post" ? "DELETE" : "UNLOCK"
  }

  /** The normal unlock after an operation: the LockInfo bytes sent to LOCK. */
  async unlock(): Promise<Reply> {
    if (this.lockBody === undefined) throw new Error("not locked")
    const reply = await this.request(this.unlockMethod, this.lockAddress, this.lockBody)
    if (reply.status === 200) {
      this.lockId = undefined
    }
    return reply
  }

  /** `force-unlock ID` from a fresh process: Terraform sends an empty body, OpenTofu ≥ 1.10 a LockInfo with only the ID. */
  forceUnlock(id: string): Promise<Reply> {
    const body = this.dialect === "terraform"
      ? ""
      : JSON.stringify({ ID: id, Operation: "", Info: "", Who: "", Version: "", Created: "0001-01-01T00:00:00Z", Path: "" })
    return this.request(this.unlockMethod, this.lockAddress, body)
  }

  /** Persist: `?ID=` only when this process holds the lock. */
  put(state: string | Uint8Array): Promise<Reply> {
    const url = this.lockId === undefined ? this.address : `${this.address}?${new URLSearchParams({ ID: this.lockId })}`
    return this.request(this.config.updateMethod ?? "POST", url, state)
  }
}

export const tfStateJson = (serial: number, lineage = "3f0c1b7e-0000-4000-8000-000000000000"): string =>
  `${
    JSON.stringify(
      {
        version: 4,
        terraform_version: "1.9.0",
        serial,
        lineage,
        outputs: { greeting: { value: `hello ${serial}`, type: "string" } },
        resources: [],
        check_results: null
      },
      null,
      2
    )
  }\n`

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))
