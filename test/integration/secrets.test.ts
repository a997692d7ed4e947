/**
 * Security checks not covered by `HttpRegistry.security.test.ts` (which covers errors, redirects,
 * Links, upload Locations and TLS):
 *
 * - credentials never reach a log line: the state store's warnings (a version tag that could not
 *   be written, retention that failed, a lock release that failed) are provoked with wrong
 *   credentials and with a registry that echoes the `Authorization` header into its error bodies,
 *   every log line is captured (all levels, through a custom `Logger`, the JSON and the logfmt
 *   loggers) and grepped for every form of every credential and token the client sent;
 * - tokens are requested with the narrowest scope: the token server's `/stats` show, per state
 *   operation, `pull` for reads, `pull`+`push` for writes, `delete` alone for deletes, and never a
 *   scope on another repository or the catalog.
 */
import type * as HttpClient from "@effect/platform/HttpClient"
import * as PlatformHttpClient from "@effect/platform/HttpClient"
import { afterAll, describe, expect, inject, it } from "@effect/vitest"
import { Cause, Effect, Layer, Logger, LogLevel, Option, Redacted } from "effect"
import { inspect } from "node:util"
import * as Credentials from "../../src/Credentials.js"
import * as HttpRegistry from "../../src/HttpRegistry.js"
import * as LockInfo from "../../src/LockInfo.js"
import * as RateLimiter from "../../src/RateLimiter.js"
import * as StateBackend from "../../src/StateBackend.js"
import { type FaultProxy, startFaultProxy } from "../support/faultProxy.js"
import type { TokenRequestRecord, TokenStats } from "../support/tokenServer.js"

const registries = inject("registries")
const run = `k${Date.now().toString(36)}`
const text = (s: string) => new TextEncoder().encode(s)

// ---------------------------------------------------------------------------------------------
// Capturing logs and Authorization headers
// ---------------------------------------------------------------------------------------------

const captured: Array<string> = []

const render = (value: unknown): string => {
  try {
    return `${inspect(value, { depth: 10 })} ${JSON.stringify(value) ?? ""} ${String(value)}`
  } catch {
    return inspect(value, { depth: 10 })
  }
}

/** Every log line, all levels: our own rendering (message, cause, annotations) plus the JSON and logfmt loggers'. */
const captureLogs = Layer.mergeAll(
  Logger.replace(
    Logger.defaultLogger,
    Logger.make(({ annotations, cause, logLevel, message, spans }) => {
      const parts = Array.isArray(message) ? message : [message]
      captured.push([
        logLevel.label,
        ...parts.map(render),
        Cause.isEmpty(cause) ? "" : Cause.pretty(cause),
        render(annotations),
        render(spans)
      ].join(" | "))
    })
  ),
  Logger.add(Logger.map(Logger.jsonLogger, (line) => void captured.push(line))),
  Logger.add(Logger.map(Logger.logfmtLogger, (line) => void captured.push(line))),
  Logger.minimumLogLevel(LogLevel.All)
)

const sentAuthorizations = new Set<string>()
const recordAuthorization = (client: HttpClient.HttpClient) =>
  PlatformHttpClient.tapRequest(client, (request) =>
    Effect.sync(() => {
      const authorization = request.headers["authorization"]
      if (authorization !== undefined) sentAuthorizations.add(authorization)
    }))

/** Every form of a credential that must never be shown. */
const formsOf = (authorization: string): ReadonlyArray<string> => {
  const [scheme = "", value = ""] = authorization.split(" ", 2)
  const forms = [authorization, value]
  if (scheme.toLowerCase() === "basic") {
    const pair = Buffer.from(value, "base64").toString("utf8")
    forms.push(pair, pair.slice(pair.indexOf(":") + 1))
  }
  return forms.flatMap((f) => [f, encodeURIComponent(f)]).filter((f) => f.length >= 6)
}

// ---------------------------------------------------------------------------------------------
// Logs
// ---------------------------------------------------------------------------------------------

describe("credentials never reach a log line", () => {
  const proxies: Array<FaultProxy> = []
  afterAll(async () => {
    await Promise.allSettled(proxies.map((p) => p.close()))
  })

  // A careless registry: its error bodies repeat the Authorization header (and its decoding).
  const echo = (status: number) => ({
    _tag: "status" as const,
    status,
    body: (request: { readonly headers: Record<string, string | Array<string> | undefined> }) => {
      const authorization = String(request.headers["authorization"] ?? "")
      const decoded = Buffer.from(authorization.replace(/^Basic /, ""), "base64").toString("utf8")
      return JSON.stringify({
        errors: [{ code: `DENIED ${authorization}`, message: `you sent ${authorization} (${decoded}), rejected` }]
      })
    }
  })

  it.live("state-store warnings provoked with wrong and echoed credentials show none of them", () =>
    Effect.gen(function*() {
      const h = registries.htpasswd
      const proxy = yield* Effect.promise(() => startFaultProxy(h.url))
      proxies.push(proxy)
      const wrongPassword = "Wr0ng-Passw0rd-in-logs"
      let password = h.password
      const credentials = Credentials.layerFunction(() =>
        Effect.sync(() => Option.some<Credentials.Credential>({ _tag: "Basic", username: h.username, password: Redacted.make(password) }))
      )
      const backend = StateBackend.layer({ repository: `${run}/logs`, versioning: { enabled: true, maxVersions: 1 } }).pipe(
        Layer.provide(HttpRegistry.layerNode({
          registry: proxy.host,
          retry: { maxRetries: 1, waitMin: "10 millis", jitter: false },
          transformClient: recordAuthorization
        }).pipe(Layer.provide(credentials), Layer.provide(RateLimiter.layerUnlimited)))
      )
      yield* Effect.gen(function*() {
        const backendService = yield* StateBackend.StateBackend
        const sm = yield* backendService.stateManager("default")
        yield* sm.put(text("{\"serial\":1}"))
        yield* sm.put(text("{\"serial\":2}"))
        // 1. The version tag is refused (403, echoing the credentials): the state lands, a warning is logged.
        proxy.setRules([{ method: "PUT", path: /\/manifests\/stver-/, times: Infinity, fault: echo(403) }])
        const third = yield* sm.put(text("{\"serial\":3}"))
        expect(third.versionTagged).toBe(false)
        // 2. Retention's DELETEs fail (500, echoing): logged, the put still succeeds.
        proxy.setRules([{ method: "DELETE", times: Infinity, fault: echo(500) }])
        yield* sm.put(text("{\"serial\":4}"))
        yield* sm.awaitRetention
        proxy.clear()
        // 3. The credentials go bad while a lock is held: releasing it fails and is logged.
        yield* sm.withLock(LockInfo.make({ ID: "logs-lock", Who: "secrets@test" }), () =>
          Effect.sync(() => {
            password = wrongPassword
          }))
        // 4. Everything fails with the wrong password (errors, not logs; captured all the same).
        for (const operation of [sm.get, sm.put(text("{}")), sm.lock(LockInfo.make({ ID: "x" })), sm.lockInfo, backendService.workspaces]) {
          const error = yield* Effect.flip(operation as Effect.Effect<unknown, { readonly _tag: string }>)
          // (The lock is still held by this process, whose release failed: that one is a LockConflict.)
          expect(["Unauthorized", "LockConflict"]).toContain(error._tag)
          yield* Effect.logError("operation failed", error)
        }
        // Clean up with the right password again.
        password = h.password
        yield* sm.forceUnlock()
      }).pipe(Effect.provide(backend))

      // The token flow too: tokens obtained with a password, then a release refused for a reader.
      const t = registries.token
      let who: { username: string; password: string } = { username: t.username, password: t.password }
      const tokenBackend = StateBackend.layer({ repository: `${run}/logs-token` }).pipe(
        Layer.provide(HttpRegistry.layerNode({
          registry: t.host,
          retry: { maxRetries: 0 },
          transformClient: recordAuthorization
        }).pipe(
          Layer.provide(Credentials.layerFunction(() =>
            Effect.sync(() => Option.some<Credentials.Credential>({ _tag: "Basic", username: who.username, password: Redacted.make(who.password) }))
          )),
          Layer.provide(RateLimiter.layerUnlimited)
        ))
      )
      yield* Effect.gen(function*() {
        const sm = yield* (yield* StateBackend.StateBackend).stateManager("default")
        yield* sm.put(text("{\"serial\":1}"))
        yield* sm.withLock(LockInfo.make({ ID: "token-lock" }), () =>
          Effect.sync(() => {
            who = { username: t.readerUsername, password: t.readerPassword }
          }))
        who = { username: t.username, password: t.password }
        yield* sm.forceUnlock()
      }).pipe(Effect.provide(tokenBackend))

      const warnings = captured.filter((line) => /^WARN/.test(line))
      expect(warnings.some((l) => l.includes("version tag"))).toBe(true)
      expect(warnings.some((l) => l.includes("retention"))).toBe(true)
      expect(warnings.filter((l) => l.includes("releasing lock")).length).toBeGreaterThanOrEqual(2)
      // The echoing registry's text did reach the logs (scrubbed), so the grep below is not vacuous.
      expect(captured.some((l) => l.includes("you sent"))).toBe(true)

      const secrets = new Set<string>([h.password, wrongPassword, t.password, t.readerPassword])
      for (const authorization of sentAuthorizations) for (const form of formsOf(authorization)) secrets.add(form)
      expect([...sentAuthorizations].some((a) => a.startsWith("Bearer ey"))).toBe(true)
      expect([...sentAuthorizations].some((a) => a.startsWith("Basic "))).toBe(true)
      const leaks: Array<string> = []
      for (const line of captured) for (const secret of secrets) if (line.includes(secret)) leaks.push(`${secret.slice(0, 4)}… in ${line.slice(0, 200)}`)
      console.log(
        `secrets in logs: ${captured.length} log lines captured (${warnings.length} warnings), ` +
          `${secrets.size} credential forms grepped for, leaks = ${leaks.length}`
      )
      expect(leaks).toEqual([])
    }).pipe(Effect.provide(captureLogs)), 60_000)
})

// ---------------------------------------------------------------------------------------------
// Token scopes
// ---------------------------------------------------------------------------------------------

describe("tokens are requested with the narrowest scope", () => {
  const t = registries.token

  const tokenRequests = Effect.promise(async () => {
    const response = await fetch(`${registries.tokenServerUrl}/stats`)
    return ((await response.json()) as TokenStats).requests
  })

  /** Token requests that mention `repository`, made while `effect` ran. */
  const scopesDuring = <A, E>(repository: string, effect: Effect.Effect<A, E>) =>
    Effect.gen(function*() {
      const before = (yield* tokenRequests).length
      const result = yield* effect
      const after = (yield* tokenRequests).slice(before)
      // Token requests of other test files run meanwhile: keep those that touch our repository,
      // plus any that name no repository at all (the catalog, registry-wide scopes).
      const ours = after.filter((r) => r.scopes.some((s) => s.startsWith(`repository:${repository}:`)))
      const unscoped = after.filter((r) => r.scopes.some((s) => !s.startsWith("repository:")))
      return { result, requests: ours, unscoped }
    })

  const actions = (request: TokenRequestRecord, repository: string) =>
    request.scopes.map((s) => {
      expect(s.startsWith(`repository:${repository}:`)).toBe(true)
      return s.slice(`repository:${repository}:`.length).split(",").sort().join(",")
    })

  const backendFor = (repository: string) =>
    StateBackend.layer({ repository }).pipe(
      Layer.provide(HttpRegistry.layerNode({ registry: t.host, retry: { maxRetries: 0 } }).pipe(
        Layer.provide(Credentials.layerStatic({ [t.host]: { _tag: "Basic", username: t.username, password: Redacted.make(t.password) } })),
        Layer.provide(RateLimiter.layerUnlimited)
      ))
    )

  /** Run `operation` with a fresh client (empty token cache) and return the actions its tokens asked for. */
  const scopesOf = <A, E>(repository: string, operation: (sm: StateBackend.StateManager, backend: StateBackend.Service) => Effect.Effect<A, E>) =>
    Effect.gen(function*() {
      const backend = yield* StateBackend.StateBackend
      const sm = yield* backend.stateManager("default")
      const { requests, result, unscoped } = yield* scopesDuring(repository, operation(sm, backend))
      expect(unscoped).toEqual([])
      for (const r of requests) expect(r.status).toBe(200)
      return { result, actions: requests.flatMap((r) => actions(r, repository)) }
    }).pipe(Effect.provide(backendFor(repository)))

  it.live("reads ask for pull, writes for pull,push, deletes for delete only", () =>
    Effect.gen(function*() {
      const repository = `${run}/scopes`
      // Seed: a state and a lock to release (each step below gets a fresh client and token cache).
      yield* scopesOf(repository, (sm) => sm.put(text("{\"serial\":1}")))
      const reads = [
        yield* scopesOf(repository, (sm) => sm.get),
        yield* scopesOf(repository, (sm) => sm.lockInfo),
        yield* scopesOf(repository, (sm) => sm.versions),
        yield* scopesOf(repository, (_, backend) => backend.workspaces)
      ]
      for (const read of reads) {
        expect(read.actions.length).toBeGreaterThan(0)
        expect(new Set(read.actions)).toEqual(new Set(["pull"]))
      }
      const put = yield* scopesOf(repository, (sm) => sm.put(text("{\"serial\":2}")))
      expect(put.actions).toContain("pull,push")
      for (const a of put.actions) expect(["pull", "pull,push"]).toContain(a)
      const lock = yield* scopesOf(repository, (sm) => sm.lock(LockInfo.make({ ID: "scopes-lock" })))
      expect(lock.actions).toContain("pull,push")
      for (const a of lock.actions) expect(["pull", "pull,push"]).toContain(a)
      // Released by a fresh process (Terraform's UNLOCK may reach another server): a read, then deletes.
      const unlock = yield* scopesOf(repository, (sm) => sm.unlock("scopes-lock"))
      expect(unlock.actions).toContain("delete")
      for (const a of unlock.actions) expect(["pull", "delete"]).toContain(a)
      // Released by the holder itself: deletes only, asked for as `delete` alone.
      const ownRelease = yield* scopesOf(repository, (sm) =>
        Effect.flatMap(sm.lock(LockInfo.make({ ID: "own-lock-2" })), (id) => scopesDuring(repository, sm.unlock(id))))
      const releaseActions = ownRelease.result.requests.flatMap((r) => actions(r, repository))
      expect(releaseActions).toEqual(["delete"])
      console.log(
        `token scopes: reads ${reads.map((r) => r.actions.join("+")).join(" / ")}; put ${[...new Set(put.actions)].join(" + ")}; ` +
          `lock ${[...new Set(lock.actions)].join(" + ")}; unlock (other process) ${[...new Set(unlock.actions)].join(" + ")}; ` +
          `unlock (holder) ${releaseActions.join(" + ")}`
      )
    }), 60_000)
})
