/**
 * Security and robustness of `HttpRegistry` against real distribution 2.8 registries (plain,
 * htpasswd, token, and a few extra ones started here: TLS, relative URLs, deletion disabled) and
 * small in-process fakes on 127.0.0.1 for what a real registry will not do (cross-origin redirects,
 * corrupt content, odd pagination, echoed credentials, connection resets).
 */
import type * as HttpClient from "@effect/platform/HttpClient"
import * as PlatformHttpClient from "@effect/platform/HttpClient"
import { afterAll, beforeAll, describe, expect, inject, it } from "@effect/vitest"
import { Cause, Chunk, Effect, Exit, Layer, Option, Redacted, Stream } from "effect"
import type { ServerResponse } from "node:http"
import { inspect } from "node:util"
import * as Credentials from "../../src/Credentials.js"
import * as Digest from "../../src/Digest.js"
import type { InvalidConfig } from "../../src/Errors.js"
import * as HttpRegistry from "../../src/HttpRegistry.js"
import * as RateLimiter from "../../src/RateLimiter.js"
import { MediaType, Registry } from "../../src/Registry.js"
import type { Service } from "../../src/Registry.js"
import type * as Retry from "../../src/Retry.js"
import { basicOf, fakeServer, type Handler, json, ociError } from "../support/fakeServer.js"
import { fixturePath } from "../support/fixtures.js"
import { startRegistry } from "../support/registryProcess.js"
import type { RunningRegistry } from "../support/registryProcess.js"
import type { TokenRequestRecord, TokenStats } from "../support/tokenServer.js"
import { artifactManifest, bytes, pushArtifact } from "../support/registrySuite.js"

const registries = inject("registries")
const run = `s${Date.now().toString(36)}`
const repoName = (name: string) => `${run}/sec/${name}`

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

type Options = HttpRegistry.Options & HttpRegistry.TlsOptions

/** A registry client with retries off unless asked for (fast, deterministic failures). */
const registryLayer = (
  options: Options,
  credentials: Layer.Layer<Credentials.Credentials> = Credentials.layerNone
): Layer.Layer<Registry, InvalidConfig> =>
  HttpRegistry.layerNode({ retry: { maxRetries: 0 }, ...options }).pipe(
    Layer.provide(credentials),
    Layer.provide(RateLimiter.layerUnlimited)
  )

/** Fast retries for tests that exercise them (no jitter, 10 ms backoff). */
const fastRetry = (maxRetries: number): Retry.Options => ({ maxRetries, waitMin: "10 millis", waitMax: "50 millis", jitter: false })

const basicCredentials = (host: string, username: string, password: string) =>
  Credentials.layerStatic({ [host]: { _tag: "Basic", username, password: Redacted.make(password) } })

/** Runs `f` with a registry built from `layer` (fresh auth state and connection pool per call). */
const withRegistry = <A, E, R>(
  layer: Layer.Layer<Registry, InvalidConfig>,
  f: (registry: Service) => Effect.Effect<A, E, R>
): Effect.Effect<A, E | InvalidConfig, Exclude<R, Registry>> => Effect.flatMap(Registry, f).pipe(Effect.provide(layer))

interface Sent {
  readonly method: string
  readonly url: string
  readonly authorization: string | undefined
}

/** Records every request the client sends (token fetches included), through `transformClient`. */
const recorder = () => {
  const sent: Array<Sent> = []
  const transformClient = (client: HttpClient.HttpClient) =>
    PlatformHttpClient.tapRequest(client, (request) =>
      Effect.sync(() => {
        sent.push({ method: request.method, url: request.url, authorization: request.headers["authorization"] })
      }))
  return { sent, transformClient }
}

const collect = <E>(stream: Stream.Stream<Uint8Array, E>) =>
  Stream.runCollect(stream).pipe(Effect.map((chunks) => Buffer.concat(Chunk.toArray(chunks))))

const tokenRequests = (repository: string): Effect.Effect<ReadonlyArray<TokenRequestRecord>> =>
  Effect.promise(async () => {
    const response = await fetch(`${registries.tokenServerUrl}/stats`)
    const stats = (await response.json()) as TokenStats
    return stats.requests.filter((r) => r.scopes.some((s) => s.startsWith(`repository:${repository}:`)))
  })

const blobOf = (data: Uint8Array) => ({ digest: Digest.sha256(data), size: data.byteLength })

/** `size` bytes of a deterministic pattern. */
const patterned = (size: number, seed = 1) => new Uint8Array(size).map((_, i) => (i * 31 + seed) % 251)

const send = (res: ServerResponse, status: number, body: Uint8Array | string, headers: Record<string, string> = {}) => {
  const payload = typeof body === "string" ? Buffer.from(body) : Buffer.from(body)
  res.writeHead(status, { "content-length": String(payload.byteLength), ...headers })
  res.end(payload)
}

/** Writes `parts` as separate chunks without a Content-Length (chunked transfer encoding). */
const sendChunked = async (res: ServerResponse, parts: ReadonlyArray<Uint8Array>, headers: Record<string, string> = {}) => {
  res.writeHead(200, headers)
  for (const part of parts) {
    res.write(part)
    await new Promise((resolve) => setTimeout(resolve, 2))
  }
  res.end()
}

// ---------------------------------------------------------------------------------------------
// Extra real registries
// ---------------------------------------------------------------------------------------------

let tlsRegistry: RunningRegistry
let relativeRegistry: RunningRegistry
let noDeleteRegistry: RunningRegistry

beforeAll(async () => {
  ;[tlsRegistry, relativeRegistry, noDeleteRegistry] = await Promise.all([
    startRegistry({ mode: "plain", tls: true }),
    startRegistry({ mode: "plain", relativeUrls: true }),
    startRegistry({ mode: "plain", deleteEnabled: false })
  ])
})

afterAll(async () => {
  await Promise.allSettled([tlsRegistry?.stop(), relativeRegistry?.stop(), noDeleteRegistry?.stop()])
})

// ---------------------------------------------------------------------------------------------
// Redirects
// ---------------------------------------------------------------------------------------------

describe("redirects", () => {
  it.scopedLive("a blob redirected to another host gets no Authorization; a same-origin redirect keeps it", () =>
    Effect.gen(function*() {
      const data = bytes("blob content served from storage")
      const blob = blobOf(data)
      const auth = basicOf("alice", "al1ce-redirect-pass")
      // "Storage" on another origin (localhost vs 127.0.0.1): serves anyone, like a signed URL.
      const storage = yield* fakeServer((req, res) =>
        req.path === `/bucket/${blob.digest}` && req.query.get("sig") === "s1gned"
          ? send(res, 200, req.method === "HEAD" ? "" : data, { "content-length": String(data.byteLength) })
          : send(res, 404, "no such object")
      , { hostname: "localhost" })
      const registry = yield* fakeServer((req, res) => {
        if (req.headers.authorization !== auth) {
          return send(res, 401, "", { "www-authenticate": "Basic realm=\"fake\"" })
        }
        if (req.path === `/v2/cross/blobs/${blob.digest}`) {
          return send(res, 307, "", { location: `${storage.url}/bucket/${blob.digest}?sig=s1gned` })
        }
        if (req.path === `/v2/same/blobs/${blob.digest}`) {
          return send(res, 307, "", { location: `/internal/${blob.digest}` })
        }
        if (req.path === `/internal/${blob.digest}`) return send(res, 200, data)
        return ociError(res, 404, "NOT_FOUND", "nothing here")
      })
      const layer = registryLayer({ registry: registry.host }, basicCredentials(registry.host, "alice", "al1ce-redirect-pass"))

      const [cross, same, exists] = yield* withRegistry(layer, (r) =>
        Effect.all([collect(r.getBlob("cross", blob)), collect(r.getBlob("same", blob)), r.blobExists("cross", blob.digest)]))
      expect(cross.equals(Buffer.from(data))).toBe(true)
      expect(same.equals(Buffer.from(data))).toBe(true)
      expect(exists).toEqual(Option.some(data.byteLength))

      // Storage saw the GET and the HEAD, with the signed query intact and no credentials.
      expect(storage.requests.map((r) => r.method).sort()).toEqual(["GET", "HEAD"])
      for (const request of storage.requests) {
        expect(request.headers.authorization).toBeUndefined()
        expect(request.query.get("sig")).toBe("s1gned")
      }
      // The same-origin hop kept the registry credentials.
      const internal = registry.requests.filter((r) => r.path.startsWith("/internal/"))
      expect(internal).toHaveLength(1)
      expect(internal[0]!.headers.authorization).toBe(auth)
    }))

  it.scopedLive("a redirect loop ends with a tagged error", () =>
    Effect.gen(function*() {
      const data = bytes("never served")
      const blob = blobOf(data)
      const registry = yield* fakeServer((req, res) => send(res, 302, "", { location: req.path }))
      const error = yield* Effect.flip(withRegistry(registryLayer({ registry: registry.host }), (r) => collect(r.getBlob("loop", blob))))
      expect(error._tag).toBe("RegistryError")
      expect(error.message).toMatch(/redirects/)
    }))
})

// ---------------------------------------------------------------------------------------------
// Content verification
// ---------------------------------------------------------------------------------------------

describe("content verification", () => {
  const good = patterned(256 * 1024, 3)
  const goodBlob = blobOf(good)
  const other = patterned(good.byteLength, 7) // same size, other bytes
  const manifest = artifactManifest(goodBlob)
  const manifestDigest = Digest.sha256(manifest)
  const otherManifest = artifactManifest(goodBlob, { tampered: "yes" })
  const parts = (data: Uint8Array, n: number) =>
    Array.from({ length: n }, (_, i) => data.subarray(Math.floor((i * data.byteLength) / n), Math.floor(((i + 1) * data.byteLength) / n)))

  const corruptRegistry = () =>
    fakeServer(async (req, res) => {
      const oci = { "content-type": MediaType.ociManifest }
      switch (req.path) {
        case `/v2/swapped/blobs/${goodBlob.digest}`:
          return sendChunked(res, parts(other, 8))
        case `/v2/swapped-length/blobs/${goodBlob.digest}`:
          return send(res, 200, other)
        case `/v2/longer/blobs/${goodBlob.digest}`:
          return sendChunked(res, [...parts(good, 4), bytes("trailing garbage")])
        case `/v2/shorter/blobs/${goodBlob.digest}`:
          return sendChunked(res, parts(good.subarray(0, good.byteLength - 10), 4))
        case `/v2/longer-declared/blobs/${goodBlob.digest}`:
          return send(res, 200, Buffer.concat([good, bytes("x")]))
        case `/v2/m/manifests/${manifestDigest}`:
          // Other bytes for the digest asked for, with a header that agrees with the request.
          return send(res, 200, otherManifest, { ...oci, "docker-content-digest": manifestDigest })
        case "/v2/m/manifests/lying-header":
          return send(res, 200, manifest, { ...oci, "docker-content-digest": Digest.sha256(otherManifest) })
        case "/v2/m/manifests/huge": {
          if (req.method === "HEAD") return send(res, 200, "", oci)
          return send(res, 200, new Uint8Array(4 * 1024 * 1024 + 1).fill(32), oci)
        }
        case "/v2/m/manifests/huge-chunked":
          return sendChunked(res, Array.from({ length: 5 }, () => new Uint8Array(1024 * 1024).fill(32)), oci)
        case "/v2/m/manifests/exactly-4mib": {
          const padded = Buffer.alloc(4 * 1024 * 1024, 32)
          Buffer.from(manifest).copy(padded)
          return send(res, 200, padded, { ...oci, "docker-content-digest": Digest.sha256(padded) })
        }
        default:
          if (req.method === "HEAD" && req.path === `/v2/head/manifests/${manifestDigest}`) {
            return send(res, 200, "", {
              ...oci,
              "docker-content-digest": Digest.sha256(otherManifest),
              "content-length": String(otherManifest.byteLength)
            })
          }
          return ociError(res, 404, "NOT_FOUND", "unknown")
      }
    })

  it.scopedLive("a blob with other bytes (same size) fails with CorruptState before its last chunk", () =>
    Effect.gen(function*() {
      const fake = yield* corruptRegistry()
      const layer = registryLayer({ registry: fake.host })
      for (const repository of ["swapped", "swapped-length"]) {
        let delivered = 0
        const result = yield* withRegistry(layer, (r) =>
          Stream.runForEach(r.getBlob(repository, goodBlob), (chunk) => Effect.sync(() => (delivered += chunk.byteLength)))
        ).pipe(Effect.either)
        expect(result._tag).toBe("Left")
        expect(result._tag === "Left" && result.left._tag).toBe("CorruptState")
        // The consumer never saw the whole (unverified) content.
        expect(delivered).toBeLessThan(goodBlob.size)
      }
    }))

  it.scopedLive("more or fewer bytes than declared fail with CorruptState", () =>
    Effect.gen(function*() {
      const fake = yield* corruptRegistry()
      const layer = registryLayer({ registry: fake.host })
      for (const repository of ["longer", "shorter", "longer-declared"]) {
        const error = yield* Effect.flip(withRegistry(layer, (r) => collect(r.getBlob(repository, goodBlob))))
        expect({ repository, tag: error._tag }).toEqual({ repository, tag: "CorruptState" })
      }
      // A descriptor that under-declares the size of otherwise correct content is also refused.
      const error = yield* Effect.flip(withRegistry(layer, (r) => collect(r.getBlob("shorter", { ...goodBlob, size: 10 }))))
      expect(error._tag).toBe("CorruptState")
    }))

  it.scopedLive("a manifest whose bytes do not match the requested digest or Docker-Content-Digest is CorruptState", () =>
    Effect.gen(function*() {
      const fake = yield* corruptRegistry()
      const layer = registryLayer({ registry: fake.host })
      const byDigest = yield* Effect.flip(withRegistry(layer, (r) => r.getManifest("m", manifestDigest)))
      expect(byDigest).toMatchObject({ _tag: "CorruptState", digest: manifestDigest })
      const byTag = yield* Effect.flip(withRegistry(layer, (r) => r.getManifest("m", "lying-header")))
      expect(byTag._tag).toBe("CorruptState")
      const head = yield* Effect.flip(withRegistry(layer, (r) => r.resolveManifest("head", manifestDigest)))
      expect(head._tag).toBe("CorruptState")
    }))

  it.scopedLive("a manifest body over 4 MiB is an error (declared or streamed); exactly 4 MiB is accepted", () =>
    Effect.gen(function*() {
      const fake = yield* corruptRegistry()
      const layer = registryLayer({ registry: fake.host })
      for (const reference of ["huge", "huge-chunked"]) {
        const exit = yield* Effect.exit(withRegistry(layer, (r) => r.getManifest("m", reference)))
        expect(Exit.isFailure(exit)).toBe(true)
        if (Exit.isFailure(exit)) {
          expect(Cause.isDie(exit.cause)).toBe(false)
          expect(Cause.failureOption(exit.cause).pipe(Option.map((e) => e._tag))).toEqual(Option.some("CorruptState"))
        }
      }
      const fits = yield* withRegistry(layer, (r) => r.getManifest("m", "exactly-4mib"))
      expect(Option.map(fits, (m) => m.bytes.byteLength)).toEqual(Option.some(4 * 1024 * 1024))
      // A manifest over the limit is not even sent.
      const tooBig = yield* Effect.flip(withRegistry(layer, (r) =>
        r.putManifest("m", "too-big", { mediaType: MediaType.ociManifest, bytes: new Uint8Array(4 * 1024 * 1024 + 1) })))
      expect(tooBig._tag).toBe("RegistryError")
      expect(fake.requests.filter((r) => r.method === "PUT")).toHaveLength(0)
    }))
})

// ---------------------------------------------------------------------------------------------
// Authentication against the real token and htpasswd registries
// ---------------------------------------------------------------------------------------------

describe("token authentication (distribution 2.8 + token server)", () => {
  const r = registries.token
  const writer = () => basicCredentials(r.host, r.username, r.password)
  const reader = () => basicCredentials(r.host, r.readerUsername, r.readerPassword)
  const toRegistry = (sent: ReadonlyArray<Sent>) => sent.filter((s) => s.url.startsWith(r.url))
  const toTokenServer = (sent: ReadonlyArray<Sent>) => sent.filter((s) => s.url.startsWith(r.tokenServerUrl))

  it.live("one token for N requests of a scope; a push needs exactly one more (push,pull), cached too", () =>
    Effect.gen(function*() {
      const repository = repoName("token-cache")
      const { sent, transformClient } = recorder()
      const layer = registryLayer({ registry: r.host, transformClient }, writer())
      yield* withRegistry(layer, (registry) =>
        Effect.gen(function*() {
          for (let i = 0; i < 10; i++) {
            expect(yield* registry.getManifest(repository, "absent")).toEqual(Option.none())
          }
          const pulls = yield* tokenRequests(repository)
          expect(pulls).toHaveLength(1)
          expect(pulls[0]).toMatchObject({ method: "GET", user: r.username, status: 200, scopes: [`repository:${repository}:pull`] })
          // 10 GETs + the one retried after the first challenge.
          expect(toRegistry(sent)).toHaveLength(11)

          yield* pushArtifact(repository, "v1", "cached tokens")
          yield* pushArtifact(repository, "v2", "cached tokens, again")
          const afterPush = yield* tokenRequests(repository)
          expect(afterPush).toHaveLength(2)
          expect([...afterPush[1]!.scopes[0]!.split(":")[2]!.split(",")].sort()).toEqual(["pull", "push"])

          for (let i = 0; i < 5; i++) expect(Option.isSome(yield* registry.getManifest(repository, "v1"))).toBe(true)
          expect(yield* tokenRequests(repository)).toHaveLength(2)
        }).pipe(Effect.provideService(Registry, registry)))
      // Every token fetch went to the realm with Basic credentials; nothing else saw them.
      for (const s of toTokenServer(sent)) expect(s.authorization).toBe(basicOf(r.username, r.password))
      for (const s of toRegistry(sent)) if (s.authorization !== undefined) expect(s.authorization).toMatch(/^Bearer ey/)
      expect(toRegistry(sent).filter((s) => s.authorization === undefined)).toHaveLength(1)
    }))

  it.live("concurrent first requests of one scope share a single token fetch", () =>
    Effect.gen(function*() {
      const repository = repoName("token-concurrent")
      const { sent, transformClient } = recorder()
      const layer = registryLayer({ registry: r.host, transformClient }, writer())
      const results = yield* withRegistry(layer, (registry) =>
        Effect.all(Array.from({ length: 10 }, () => registry.getManifest(repository, "absent")), { concurrency: "unbounded" }))
      expect(results.every(Option.isNone)).toBe(true)
      expect(yield* tokenRequests(repository)).toHaveLength(1)
      expect(toTokenServer(sent)).toHaveLength(1)
    }))

  it.live("insufficient_scope: one re-challenge, then Unauthorized (no loop)", () =>
    Effect.gen(function*() {
      const repository = repoName("insufficient")
      // The repository must exist for the pull to get a token first (warm path: Bearer mode known).
      yield* withRegistry(registryLayer({ registry: r.host }, writer()), () => pushArtifact(repository, "seed", "seed"))
      const before = (yield* tokenRequests(repository)).length
      const { sent, transformClient } = recorder()
      const layer = registryLayer({ registry: r.host, transformClient }, reader())
      const result = yield* withRegistry(layer, (registry) =>
        Effect.gen(function*() {
          expect(Option.isSome(yield* registry.getManifest(repository, "seed"))).toBe(true)
          const afterPull = (yield* tokenRequests(repository)).length
          expect(afterPull - before).toBe(1)
          const sentBeforePush = toRegistry(sent).length
          const data = bytes("reader may not push this")
          const error = yield* Effect.flip(registry.putBlob(repository, blobOf(data), data))
          return { error, pushRequests: toRegistry(sent).length - sentBeforePush, afterPull }
        }))
      expect(result.error).toMatchObject({ _tag: "Unauthorized", status: 401, code: "insufficient_scope" })
      // The POST with the push token, one re-challenge with a fresh token, then give up.
      expect(result.pushRequests).toBe(2)
      const pushTokens = (yield* tokenRequests(repository)).length - result.afterPull
      expect(pushTokens).toBe(2)

      // Cold path (nothing known yet): unauthenticated POST, challenge, one token, one retry.
      const cold = recorder()
      const coldError = yield* Effect.flip(withRegistry(
        registryLayer({ registry: r.host, transformClient: cold.transformClient }, reader()),
        (registry) => registry.putBlob(repository, blobOf(bytes("cold")), bytes("cold"))
      ))
      expect(coldError).toMatchObject({ _tag: "Unauthorized", code: "insufficient_scope" })
      expect(toRegistry(cold.sent)).toHaveLength(2)
      expect(toTokenServer(cold.sent)).toHaveLength(1)
    }))

  it.live("wrong password: the token endpoint refuses, Unauthorized, one token request", () =>
    Effect.gen(function*() {
      const repository = repoName("token-wrong-password")
      const { sent, transformClient } = recorder()
      const error = yield* Effect.flip(withRegistry(
        registryLayer({ registry: r.host, transformClient }, basicCredentials(r.host, r.username, "not-the-password")),
        (registry) => registry.getManifest(repository, "v1")
      ))
      expect(error._tag).toBe("Unauthorized")
      expect(toTokenServer(sent)).toHaveLength(1)
    }))

  it.live("a RefreshToken credential is exchanged with POST grant_type=refresh_token", () =>
    Effect.gen(function*() {
      const repository = repoName("refresh-token")
      const refreshToken = yield* Effect.promise(async () => {
        const response = await fetch(`${r.tokenServerUrl}/token`, {
          method: "POST",
          headers: { "content-type": "application/x-www-form-urlencoded" },
          body: new URLSearchParams({
            grant_type: "password",
            access_type: "offline",
            username: r.username,
            password: r.password,
            service: "oras-state-test-registry",
            client_id: "oras-state-test"
          }).toString()
        })
        return ((await response.json()) as { refresh_token: string }).refresh_token
      })
      expect(refreshToken.length).toBeGreaterThan(10)
      const { sent, transformClient } = recorder()
      const layer = registryLayer(
        { registry: r.host, transformClient },
        Credentials.layerStatic({ [r.host]: { _tag: "RefreshToken", token: Redacted.make(refreshToken) } })
      )
      const pushed = yield* withRegistry(layer, () => pushArtifact(repository, "v1", "via refresh token"))
      const got = yield* withRegistry(layer, (registry) => registry.getManifest(repository, "v1"))
      expect(Option.map(got, (m) => m.digest)).toEqual(Option.some(pushed.digest))
      const requests = yield* tokenRequests(repository)
      expect(requests.length).toBeGreaterThan(0)
      for (const request of requests) {
        expect(request).toMatchObject({ method: "POST", grant_type: "refresh_token", user: r.username, status: 200 })
      }
      // The refresh token travels in the form body only, never in a header.
      for (const s of sent) expect(s.authorization ?? "").not.toContain(refreshToken)
    }))

  it.live("an AccessToken credential is sent as Bearer directly (no token fetch)", () =>
    Effect.gen(function*() {
      const repository = repoName("access-token")
      const token = yield* Effect.promise(async () => {
        const url = new URL(`${r.tokenServerUrl}/token`)
        url.searchParams.set("service", "oras-state-test-registry")
        url.searchParams.append("scope", `repository:${repository}:pull,push`)
        const response = await fetch(url, { headers: { authorization: basicOf(r.username, r.password) } })
        return ((await response.json()) as { token: string }).token
      })
      const before = (yield* tokenRequests(repository)).length
      const { sent, transformClient } = recorder()
      const layer = registryLayer(
        { registry: r.host, transformClient },
        Credentials.layerStatic({ [r.host]: { _tag: "AccessToken", token: Redacted.make(token) } })
      )
      const pushed = yield* withRegistry(layer, (registry) =>
        Effect.zipLeft(pushArtifact(repository, "v1", "via access token"), registry.getManifest(repository, "v1")))
      expect(pushed.digest).toMatch(/^sha256:/)
      expect((yield* tokenRequests(repository)).length).toBe(before)
      expect(toTokenServer(sent)).toHaveLength(0)
      const authorized = toRegistry(sent).filter((s) => s.authorization !== undefined)
      expect(authorized.length).toBeGreaterThan(0)
      for (const s of authorized) expect(s.authorization).toBe(`Bearer ${token}`)
    }))
})

describe("Basic-only registry (htpasswd)", () => {
  const r = registries.htpasswd

  it.live("correct credentials work; a wrong password and no credentials are Unauthorized", () =>
    Effect.gen(function*() {
      const repository = repoName("basic")
      const { sent, transformClient } = recorder()
      const ok = registryLayer({ registry: r.host, transformClient }, basicCredentials(r.host, r.username, r.password))
      const pushed = yield* withRegistry(ok, () => pushArtifact(repository, "v1", "basic auth"))
      expect(Option.isSome(yield* withRegistry(ok, (registry) => registry.getManifest(repository, pushed.digest)))).toBe(true)
      // After the first challenge of a client, Basic is sent up front.
      expect(sent.filter((s) => s.authorization === undefined).length).toBeLessThanOrEqual(2)

      const wrong = yield* Effect.flip(withRegistry(
        registryLayer({ registry: r.host }, basicCredentials(r.host, r.username, "wrong-password")),
        (registry) => registry.getManifest(repository, "v1")
      ))
      expect(wrong).toMatchObject({ _tag: "Unauthorized", status: 401 })
      expect(wrong.message).toMatch(/refused the credentials/)
      const none = yield* Effect.flip(withRegistry(registryLayer({ registry: r.host }), (registry) => registry.getManifest(repository, "v1")))
      expect(none).toMatchObject({ _tag: "Unauthorized", status: 401 })
      expect(none.message).toMatch(/requires credentials/)
      const push = yield* Effect.flip(withRegistry(registryLayer({ registry: r.host }), () => pushArtifact(repository, "v2", "anonymous")))
      expect(push._tag).toBe("Unauthorized")
    }))
})

// ---------------------------------------------------------------------------------------------
// Credential leaks
// ---------------------------------------------------------------------------------------------

describe("no credential leaks", () => {
  /** Every operation of the service, each expected to fail. */
  const everyOperation = (registry: Service, repository: string) => {
    const data = bytes(`payload for ${repository}`)
    const blob = blobOf(data)
    return [
      registry.getManifest(repository, "v1"),
      registry.resolveManifest(repository, "v1"),
      registry.putManifest(repository, "v1", { mediaType: MediaType.ociManifest, bytes: artifactManifest(blob) }),
      registry.deleteManifest(repository, blob.digest),
      registry.blobExists(repository, blob.digest),
      registry.putBlob(repository, blob, data),
      collect(registry.getBlob(repository, blob)),
      Stream.runCollect(registry.listTags(repository))
    ] as ReadonlyArray<Effect.Effect<unknown, unknown>>
  }

  /** Runs every operation through `layer` and keeps each failure's Cause (a success fails the test). */
  const failuresOf = (layer: Layer.Layer<Registry, InvalidConfig>, repository: string) =>
    withRegistry(layer, (registry) =>
      Effect.forEach(everyOperation(registry, repository), (operation, i) =>
        Effect.exit(operation).pipe(Effect.map((exit) => {
          if (Exit.isSuccess(exit)) throw new Error(`operation ${i} on ${repository} unexpectedly succeeded`)
          return exit.cause
        }))))

  /** Everything derivable from a credential that must never show up in an error. */
  const secretsOfBasic = (username: string, password: string) => [
    password,
    `${username}:${password}`,
    Buffer.from(`${username}:${password}`).toString("base64")
  ]
  const secretsOfHeader = (header: string) => {
    const [scheme, value = ""] = header.split(" ", 2)
    if (scheme?.toLowerCase() !== "basic") return [header, value]
    const decoded = Buffer.from(value, "base64").toString("utf8")
    return [header, value, decoded, decoded.slice(decoded.indexOf(":") + 1)]
  }

  const renderings = (cause: Cause.Cause<unknown>): ReadonlyArray<string> => {
    const out = [Cause.pretty(cause), inspect(cause, { depth: 10 })]
    for (const error of [...Cause.failures(cause), ...Cause.defects(cause)]) {
      out.push(String(error), JSON.stringify(error), inspect(error, { depth: 10 }))
      if (error instanceof Error) out.push(error.message, error.stack ?? "")
    }
    return out
  }

  it.scopedLive("wrong passwords and tokens, and registries that echo credentials, never put a secret in an error", () =>
    Effect.gen(function*() {
      const secrets = new Set<string>()
      const causes: Array<Cause.Cause<unknown>> = []
      const { sent, transformClient } = recorder()
      const collectFrom = (layer: Layer.Layer<Registry, InvalidConfig>, repository: string) =>
        Effect.map(failuresOf(layer, repository), (cs) => causes.push(...cs))

      // 1. htpasswd registry, wrong password.
      const h = registries.htpasswd
      const hPassword = "Wr0ng-htpasswd-Passw0rd!"
      secretsOfBasic(h.username, hPassword).forEach((s) => secrets.add(s))
      yield* collectFrom(
        registryLayer({ registry: h.host, transformClient }, basicCredentials(h.host, h.username, hPassword)),
        repoName("leak-htpasswd")
      )

      // 2. Token registry: wrong password, a bogus access token, a bogus refresh token, and the
      //    reader (real tokens, refused for push/delete).
      const t = registries.token
      const tPassword = "Wr0ng-token-Passw0rd!"
      secretsOfBasic(t.username, tPassword).forEach((s) => secrets.add(s))
      yield* collectFrom(
        registryLayer({ registry: t.host, transformClient }, basicCredentials(t.host, t.username, tPassword)),
        repoName("leak-token-password")
      )
      const bogusAccess = "bogus-access-token-5ecr3t-0123456789"
      const bogusRefresh = "bogus-refresh-token-5ecr3t-9876543210"
      secrets.add(bogusAccess).add(bogusRefresh)
      yield* collectFrom(
        registryLayer(
          { registry: t.host, transformClient },
          Credentials.layerStatic({ [t.host]: { _tag: "AccessToken", token: Redacted.make(bogusAccess) } })
        ),
        repoName("leak-access-token")
      )
      yield* collectFrom(
        registryLayer(
          { registry: t.host, transformClient },
          Credentials.layerStatic({ [t.host]: { _tag: "RefreshToken", token: Redacted.make(bogusRefresh) } })
        ),
        repoName("leak-refresh-token")
      )
      secretsOfBasic(t.readerUsername, t.readerPassword).forEach((s) => secrets.add(s))
      const readerRepo = repoName("leak-reader")
      yield* withRegistry(
        registryLayer({ registry: t.host }, basicCredentials(t.host, t.username, t.password)),
        () => pushArtifact(readerRepo, "seed", "seed")
      )
      yield* withRegistry(
        registryLayer({ registry: t.host, transformClient }, basicCredentials(t.host, t.readerUsername, t.readerPassword)),
        (registry) =>
          Effect.forEach(
            [
              registry.putBlob(readerRepo, blobOf(bytes("nope")), bytes("nope")),
              registry.putManifest(readerRepo, "v2", { mediaType: MediaType.ociManifest, bytes: bytes("{}") }),
              registry.deleteManifest(readerRepo, Digest.sha256(bytes("x")))
            ] as ReadonlyArray<Effect.Effect<unknown, { readonly _tag: string }>>,
            (op) => Effect.flip(op).pipe(Effect.map((e) => causes.push(Cause.fail(e))))
          )
      )

      // 3. A registry and token realm that echo whatever credentials they receive into their error
      //    bodies (OCI JSON and plain text, 4xx and 5xx).
      const echoPassword = "Ech0-me-Passw0rd"
      const echoRefresh = "echo-refresh-token-5ecr3t-424242"
      const echoToken = "echo-bearer-token-5ecr3t-171717"
      secretsOfBasic("echo", echoPassword).forEach((s) => secrets.add(s))
      secrets.add(echoRefresh).add(echoToken)
      let statusIndex = 0
      const statuses = [400, 403, 409, 500, 503, 429]
      const echo = yield* fakeServer((req, res, self) => {
        const authorization = req.headers.authorization ?? ""
        const decoded = authorization.startsWith("Basic ") ? Buffer.from(authorization.slice(6), "base64").toString() : ""
        const said = `${authorization} (${decoded}) ${req.body.toString("utf8")} ${decodeURIComponent(req.url)}`
        if (req.path === "/token") {
          // The realm refuses everything, echoing the request (form body included).
          return req.query.get("mode") === "ok"
            ? json(res, 200, { token: echoToken, expires_in: 300 })
            : ociError(res, req.method === "POST" ? 400 : 500, "DENIED", `token refused for ${said}`)
        }
        if (req.headers.authorization === undefined) {
          const bearer = req.path.startsWith("/v2/bearer")
          const realm = `${self.url}/token${req.path.startsWith("/v2/bearer-ok") ? "?mode=ok" : ""}`
          return send(res, 401, "", {
            "www-authenticate": bearer ? `Bearer realm="${realm}",service="echo"` : "Basic realm=\"echo\""
          })
        }
        const status = statuses[statusIndex++ % statuses.length]!
        if (statusIndex % 2 === 0) return send(res, status, `plain text: you sent ${said}`, { "content-type": "text/plain" })
        return ociError(res, status, `DENIED ${req.headers.authorization}`, `you sent ${said}`)
      })
      yield* collectFrom(
        registryLayer({ registry: echo.host, transformClient }, basicCredentials(echo.host, "echo", echoPassword)),
        "basic/repo"
      )
      yield* collectFrom(
        registryLayer({ registry: echo.host, transformClient }, basicCredentials(echo.host, "echo", echoPassword)),
        "bearer/repo"
      )
      yield* collectFrom(
        registryLayer(
          { registry: echo.host, transformClient },
          Credentials.layerStatic({ [echo.host]: { _tag: "RefreshToken", token: Redacted.make(echoRefresh) } })
        ),
        "bearer/refresh"
      )
      yield* collectFrom(
        registryLayer({ registry: echo.host, transformClient }, basicCredentials(echo.host, "echo", echoPassword)),
        "bearer-ok/repo"
      )

      // Every Authorization header the client sent (real tokens included) is a secret too.
      for (const s of sent) if (s.authorization !== undefined) secretsOfHeader(s.authorization).forEach((x) => secrets.add(x))
      expect(sent.filter((s) => s.authorization?.startsWith("Bearer ey")).length).toBeGreaterThan(0)
      expect(causes.length).toBeGreaterThan(40)

      const leaks: Array<string> = []
      for (const cause of causes) {
        expect(Cause.isDie(cause)).toBe(false)
        for (const text of renderings(cause)) {
          for (const secret of secrets) {
            if (secret.length >= 6 && text.includes(secret)) leaks.push(`${secret} in ${text.slice(0, 300)}`)
          }
        }
      }
      expect(leaks).toEqual([])
    }))

  it.live("a registry address with userinfo is refused without echoing the password", () =>
    Effect.gen(function*() {
      for (const address of ["https://alice:hunter2-Secret@registry.example", "alice:hunter2-Secret@127.0.0.1:5000"]) {
        const error = yield* Effect.flip(HttpRegistry.parseEndpoint(address))
        expect(error._tag).toBe("InvalidConfig")
        for (const text of [String(error), error.message, JSON.stringify(error)]) expect(text).not.toContain("hunter2-Secret")
      }
    }))
})

// ---------------------------------------------------------------------------------------------
// Error responses
// ---------------------------------------------------------------------------------------------

describe("error responses become tagged errors", () => {
  const data = bytes("error mapping")
  const blob = blobOf(data)
  const manifest = artifactManifest(blob)
  const manifestDigest = Digest.sha256(manifest)

  it.live("DELETE answered 405 (deletion disabled on a real registry) is Unsupported", () =>
    Effect.gen(function*() {
      const repository = repoName("no-delete")
      const layer = registryLayer({ registry: noDeleteRegistry.host })
      const pushed = yield* withRegistry(layer, () => pushArtifact(repository, "v1", "undeletable"))
      const error = yield* Effect.flip(withRegistry(layer, (r) => r.deleteManifest(repository, pushed.digest)))
      expect(error).toMatchObject({ _tag: "Unsupported", status: 405, code: "UNSUPPORTED" })
    }))

  it.scopedLive("405 on DELETE and 400 DIGEST_INVALID on a tag DELETE are Unsupported", () =>
    Effect.gen(function*() {
      const fake = yield* fakeServer((req, res) =>
        req.method !== "DELETE"
          ? ociError(res, 404, "NOT_FOUND", "nothing")
          : req.path.endsWith(`/manifests/${manifestDigest}`)
          ? ociError(res, 405, "UNSUPPORTED", "The operation is unsupported.")
          : ociError(res, 400, "DIGEST_INVALID", "provided digest did not match uploaded content")
      )
      const layer = registryLayer({ registry: fake.host })
      const byDigest = yield* Effect.flip(withRegistry(layer, (r) => r.deleteManifest("repo", manifestDigest)))
      expect(byDigest).toMatchObject({ _tag: "Unsupported", status: 405, code: "UNSUPPORTED" })
      const byTag = yield* Effect.flip(withRegistry(layer, (r) => r.deleteManifest("repo", "v1")))
      expect(byTag).toMatchObject({ _tag: "Unsupported", status: 400, code: "DIGEST_INVALID" })
    }))

  it.scopedLive("429 with Retry-After is TransientRegistry with retryAfterMillis, and is retried after the delay", () =>
    Effect.gen(function*() {
      let calls = 0
      const fake = yield* fakeServer((_, res) =>
        ++calls % 2 === 1
          ? ociError(res, 429, "TOOMANYREQUESTS", "slow down", { "retry-after": "1" })
          : send(res, 200, manifest, { "content-type": MediaType.ociManifest, "docker-content-digest": manifestDigest })
      )
      const once = yield* Effect.flip(withRegistry(registryLayer({ registry: fake.host }), (r) => r.getManifest("repo", "v1")))
      expect(once).toMatchObject({ _tag: "TransientRegistry", status: 429, code: "TOOMANYREQUESTS", retryAfterMillis: 1000 })
      calls = 0
      const start = Date.now()
      const got = yield* withRegistry(registryLayer({ registry: fake.host, retry: fastRetry(2) }), (r) => r.getManifest("repo", "v1"))
      expect(Option.map(got, (m) => m.digest)).toEqual(Option.some(manifestDigest))
      // The 10 ms backoff was raised to the server's second.
      expect(Date.now() - start).toBeGreaterThanOrEqual(950)
      expect(calls).toBe(2)
    }))

  it.scopedLive("503 then 200 on a GET succeeds after one retry", () =>
    Effect.gen(function*() {
      let calls = 0
      const fake = yield* fakeServer((_, res) =>
        ++calls === 1
          ? ociError(res, 503, "UNAVAILABLE", "try again")
          : send(res, 200, manifest, { "content-type": MediaType.ociManifest, "docker-content-digest": manifestDigest })
      )
      const got = yield* withRegistry(registryLayer({ registry: fake.host, retry: fastRetry(2) }), (r) => r.getManifest("repo", "v1"))
      expect(Option.isSome(got)).toBe(true)
      expect(fake.requests).toHaveLength(2)
    }))

  it.scopedLive("a manifest PUT by tag answered 503 is not retried; by digest it is", () =>
    Effect.gen(function*() {
      const fake = yield* fakeServer((_, res) => ociError(res, 503, "UNAVAILABLE", "backend down"))
      const layer = registryLayer({ registry: fake.host, retry: fastRetry(3) })
      const byTag = yield* Effect.flip(withRegistry(layer, (r) =>
        r.putManifest("repo", "latest", { mediaType: MediaType.ociManifest, bytes: manifest })))
      expect(byTag).toMatchObject({ _tag: "TransientRegistry", status: 503 })
      expect(fake.requests.filter((r) => r.method === "PUT")).toHaveLength(1)
      yield* Effect.flip(withRegistry(layer, (r) =>
        r.putManifest("repo", manifestDigest, { mediaType: MediaType.ociManifest, bytes: manifest })))
      expect(fake.requests.filter((r) => r.method === "PUT")).toHaveLength(1 + 4)
    }))

  it.scopedLive("garbage and non-JSON error bodies still give clean tagged errors", () =>
    Effect.gen(function*() {
      const bodies: ReadonlyArray<readonly [number, string | Uint8Array, string]> = [
        [400, "<html><body>Bad Request</body></html>", "RegistryError"],
        [403, "{\"errors\": \"not an array\"}", "Unauthorized"],
        [404, "{\"errors\": [null, 1]}", "RegistryError"],
        [409, "null", "RegistryError"],
        [410, "{\"errors\":[{\"code\":{\"nested\":1},\"message\":[\"x\"]}]}", "RegistryError"],
        [500, new Uint8Array(200_000).map((_, i) => i % 256), "TransientRegistry"],
        [502, "\u0000\u0001\u001b[31mred\u001b[0m\r\nInjected: header", "TransientRegistry"],
        [400, `{"errors":[{"code":"X","message":"${"long ".repeat(10_000)}"}]}`, "RegistryError"],
        [418, "", "RegistryError"]
      ]
      let i = 0
      const fake = yield* fakeServer((_, res) => {
        const [status, body] = bodies[i++ % bodies.length]!
        send(res, status, body, { "content-type": "application/json" })
      })
      const layer = registryLayer({ registry: fake.host })
      for (const [status, , tag] of bodies) {
        const exit = yield* Effect.exit(withRegistry(layer, (r) =>
          r.putManifest("repo", "v1", { mediaType: MediaType.ociManifest, bytes: manifest })))
        expect(Exit.isFailure(exit) && !Cause.isDie(exit.cause)).toBe(true)
        const error = Exit.isFailure(exit) ? Option.getOrThrow(Cause.failureOption(exit.cause)) : undefined
        expect(error).toMatchObject({ _tag: tag, status })
        const message = (error as Error).message
        expect(message.length).toBeLessThan(500)
        expect(message).not.toMatch(/[\u0000-\u001f\u007f]/)
      }
    }))

  it.scopedLive("a connection reset mid-body is TransientRegistry (manifest, blob, tag list)", () =>
    Effect.gen(function*() {
      const fake = yield* fakeServer((req, res) => {
        res.writeHead(200, {
          "content-length": "100000",
          "content-type": req.path.includes("/manifests/") ? MediaType.ociManifest : "application/json"
        })
        res.write(Buffer.alloc(1000, 123))
        setTimeout(() => res.socket?.destroy(), 10)
      })
      const layer = registryLayer({ registry: fake.host })
      const manifestError = yield* Effect.flip(withRegistry(layer, (r) => r.getManifest("repo", "v1")))
      expect(manifestError._tag).toBe("TransientRegistry")
      const blobError = yield* Effect.flip(withRegistry(layer, (r) => collect(r.getBlob("repo", { ...blob, size: 100000 }))))
      expect(blobError._tag).toBe("TransientRegistry")
      const tagsError = yield* Effect.flip(withRegistry(layer, (r) => Stream.runCollect(r.listTags("repo"))))
      expect(tagsError._tag).toBe("TransientRegistry")
    }))

  it.scopedLive("an answer we do not read is drained (its connection is kept); one over 1 MiB is given up, not read", () =>
    Effect.gen(function*() {
      const small = JSON.stringify({ errors: [{ code: "MANIFEST_UNKNOWN", message: "x".repeat(4000) }] })
      const hugeSize = 64 * 1024 * 1024
      let hugeWritten = 0
      const fake = yield* fakeServer(async (req, res) => {
        if (!req.path.endsWith("/huge")) return send(res, 404, small, { "content-type": "application/json" })
        // Written as the client takes it, so that what was written shows what was read (plus
        // what the loopback socket buffers hold).
        res.writeHead(404, { "content-length": String(hugeSize), "content-type": "application/json" })
        const chunk = Buffer.alloc(64 * 1024, 0x20)
        let closed = false
        res.on("close", () => {
          closed = true
        })
        while (!closed && hugeWritten < hugeSize) {
          hugeWritten += chunk.byteLength
          if (!res.write(chunk)) await new Promise((resolve) => res.once("drain", resolve).once("close", resolve))
        }
        res.end()
      })
      const layer = registryLayer({ registry: fake.host })
      const missing = yield* withRegistry(layer, (r) => Effect.forEach(Array.from({ length: 10 }), () => r.getManifest("repo", "missing")))
      expect(missing.every(Option.isNone)).toBe(true)
      // Drained bodies leave their connections reusable: ten requests, at most two connections
      // (undici may hand the next request to a second one while the first settles).
      expect(new Set(fake.requests.map((request) => request.clientPort)).size).toBeLessThanOrEqual(2)
      expect(yield* withRegistry(layer, (r) => r.getManifest("repo", "huge"))).toEqual(Option.none())
      yield* Effect.promise(() => new Promise((resolve) => setTimeout(resolve, 200)))
      // Given up after the first MiB: the server could only write what the socket buffers hold.
      expect(hugeWritten).toBeLessThan(hugeSize / 2)
    }))

  it.scopedLive("a refused connection is TransientRegistry and is retried", () =>
    Effect.gen(function*() {
      const fake = yield* fakeServer((_, res) => send(res, 200, ""))
      const host = fake.host
      yield* Effect.promise(() => fake.close())
      const error = yield* Effect.flip(withRegistry(registryLayer({ registry: host, retry: fastRetry(1) }), (r) =>
        r.getManifest("repo", "v1")))
      expect(error._tag).toBe("TransientRegistry")
      expect(error.message).toMatch(/ECONNREFUSED/)
    }))
})

// ---------------------------------------------------------------------------------------------
// Tag listing
// ---------------------------------------------------------------------------------------------

describe("tag listing", () => {
  const all = Array.from({ length: 7 }, (_, i) => `t${i}`)
  const page = (last: string | null, n: number) => {
    const start = last === null ? 0 : all.indexOf(last) + 1
    return all.slice(start, start + n)
  }
  // Pages of `n` tags, each linking to the next: relative Links on odd pages, absolute on even ones.
  const linkedPages: Handler = (req, res, self) => {
    const n = Number(req.query.get("n") ?? 3)
    const tags = page(req.query.get("last"), n)
    const last = tags[tags.length - 1]
    const more = last !== undefined && last !== all[all.length - 1]
    const target = `/v2/repo/tags/list?n=${n}&last=${last}`
    const link = all.indexOf(last ?? "") % 2 === 0 ? target : `${self.url}${target}`
    json(res, 200, { name: "repo", tags }, more ? { link: `<${link}>; rel="next"` } : {})
  }
  const listAll = (layer: Layer.Layer<Registry, InvalidConfig>, repository = "repo", pageSize = 3) =>
    withRegistry(layer, (r) => Stream.runCollect(r.listTags(repository, { pageSize }))).pipe(Effect.map(Chunk.toArray))

  it.scopedLive("a registry that ignores n (one page, no Link) works", () =>
    Effect.gen(function*() {
      const fake = yield* fakeServer((_, res) => json(res, 200, { name: "repo", tags: all }))
      expect(yield* listAll(registryLayer({ registry: fake.host }))).toEqual(all)
      expect(fake.requests).toHaveLength(1)
      expect(fake.requests[0]!.query.get("n")).toBe("3")
    }))

  it.scopedLive("relative and absolute Link URLs are followed; the same stream can be run twice", () =>
    Effect.gen(function*() {
      const fake = yield* fakeServer(linkedPages)
      const layer = registryLayer({ registry: fake.host })
      expect(yield* listAll(layer)).toEqual(all)
      expect(fake.requests).toHaveLength(3)
      // One Stream value, run twice: pagination state is per run.
      const twice = yield* withRegistry(layer, (r) => {
        const stream = r.listTags("repo", { pageSize: 2 })
        return Effect.zip(Stream.runCollect(stream), Stream.runCollect(stream))
      })
      expect(Chunk.toArray(twice[0])).toEqual(all)
      expect(Chunk.toArray(twice[1])).toEqual(all)
    }))

  it.scopedLive("a Link back to the same page, or pages that repeat, fail fast with a tagged error", () =>
    Effect.gen(function*() {
      const samePage = yield* fakeServer((req, res) =>
        json(res, 200, { tags: ["a", "b"] }, { link: `<${req.url}>; rel="next"` }))
      const start = Date.now()
      const loop = yield* Effect.flip(listAll(registryLayer({ registry: samePage.host })))
      expect(loop._tag).toBe("RegistryError")
      expect(loop.message).toMatch(/loop/)
      expect(samePage.requests).toHaveLength(1)

      let k = 0
      const repeating = yield* fakeServer((_, res) =>
        json(res, 200, { tags: ["a", "b"] }, { link: `</v2/repo/tags/list?n=3&last=x${k++}>; rel="next"` }))
      const repeat = yield* Effect.flip(listAll(registryLayer({ registry: repeating.host })))
      expect(repeat._tag).toBe("RegistryError")
      expect(repeating.requests).toHaveLength(2)

      // A cycle through two pages is caught as well.
      const cycle = yield* fakeServer((req, res) => {
        const second = req.query.get("last") === "b"
        json(res, 200, { tags: second ? ["c"] : ["a", "b"] }, {
          link: second ? "</v2/repo/tags/list?n=3>; rel=\"next\"" : "</v2/repo/tags/list?n=3&last=b>; rel=\"next\""
        })
      })
      const cycled = yield* Effect.flip(listAll(registryLayer({ registry: cycle.host })))
      expect(cycled._tag).toBe("RegistryError")
      expect(Date.now() - start).toBeLessThan(2000)
    }))

  it.scopedLive("listAllTags walks the same pages (relative and absolute Links) and refuses the same loops", () =>
    Effect.gen(function*() {
      const fake = yield* fakeServer(linkedPages)
      const layer = registryLayer({ registry: fake.host })
      // One Effect value, run twice: pagination state is per run.
      const twice = yield* withRegistry(layer, (r) => {
        const listing = r.listAllTags("repo", { pageSize: 3 })
        return Effect.zip(listing, listing)
      })
      expect(twice).toEqual([all, all])
      expect(fake.requests).toHaveLength(6)
      const samePage = yield* fakeServer((req, res) =>
        json(res, 200, { tags: ["a", "b"] }, { link: `<${req.url}>; rel="next"` }))
      const loop = yield* Effect.flip(withRegistry(registryLayer({ registry: samePage.host }), (r) => r.listAllTags("repo")))
      expect(loop._tag).toBe("RegistryError")
      expect(loop.message).toMatch(/loop/)
      expect(samePage.requests).toHaveLength(1)
    }))

  it.scopedLive("a Link to another origin is refused, and nothing (certainly no Authorization) is sent there", () =>
    Effect.gen(function*() {
      const auth = basicOf("alice", "l1nk-Passw0rd")
      const elsewhere = yield* fakeServer((_, res) => json(res, 200, { tags: ["stolen"] }), { hostname: "localhost" })
      const fake = yield* fakeServer((req, res) =>
        req.headers.authorization !== auth
          ? send(res, 401, "", { "www-authenticate": "Basic realm=\"fake\"" })
          : json(res, 200, { tags: ["a"] }, { link: `<${elsewhere.url}/v2/repo/tags/list?last=a>; rel="next"` }))
      const error = yield* Effect.flip(listAll(
        registryLayer({ registry: fake.host }, basicCredentials(fake.host, "alice", "l1nk-Passw0rd"))
      ))
      expect(error._tag).toBe("RegistryError")
      expect(error.message).toMatch(/another origin/)
      expect(elsewhere.requests).toHaveLength(0)
    }))

  it.live("distribution 2.8 (ignores n, no Link) lists every tag", () =>
    Effect.gen(function*() {
      const repository = repoName("tags-real")
      const layer = registryLayer({ registry: registries.plain.host })
      const pushed = yield* withRegistry(layer, () => pushArtifact(repository, "a", "tags"))
      yield* withRegistry(layer, (r) =>
        Effect.forEach(["b", "c", "d"], (tag) => r.putManifest(repository, tag, { mediaType: MediaType.ociManifest, bytes: pushed.manifest })))
      expect([...(yield* listAll(layer, repository, 2))].sort()).toEqual(["a", "b", "c", "d"])
    }))
})

// ---------------------------------------------------------------------------------------------
// Upload Location handling
// ---------------------------------------------------------------------------------------------

describe("upload Location", () => {
  it.live("a real registry with relative URLs (http.relativeurls) accepts uploads", () =>
    Effect.gen(function*() {
      const repository = repoName("relative")
      const locations: Array<string> = []
      const layer = registryLayer({
        registry: relativeRegistry.host,
        transformClient: (client) =>
          PlatformHttpClient.tap(client, (response) =>
            Effect.sync(() => {
              const location = response.headers["location"]
              if (response.status === 202 && location !== undefined) locations.push(location)
            }))
      })
      const pushed = yield* withRegistry(layer, () => pushArtifact(repository, "v1", "relative locations"))
      const got = yield* withRegistry(layer, (r) => collect(r.getBlob(repository, pushed.layer)))
      expect(got.equals(Buffer.from(pushed.data))).toBe(true)
      expect(locations.length).toBe(2)
      for (const location of locations) expect(location).toMatch(/^\/v2\/.*\?_state=/)
    }))

  it.scopedLive("the final PUT keeps the Location's query, appends &digest=, sends octet-stream with a length", () =>
    Effect.gen(function*() {
      const data = patterned(70_000, 5)
      const blob = blobOf(data)
      const auth = basicOf("alice", "upl0ad-Passw0rd")
      const storage = yield* fakeServer((_, res) => send(res, 201, ""), { hostname: "localhost" })
      let uploads = 0
      const fake = yield* fakeServer((req, res, self) => {
        if (req.headers.authorization !== auth) {
          return send(res, 401, "", { "www-authenticate": "Basic realm=\"fake\"" })
        }
        if (req.method === "POST") {
          const id = ++uploads
          const location = id === 1
            ? `/v2/repo/blobs/uploads/u1?_state=abc%2Bdef%3D%3D&extra=1`
            : id === 2
            ? `${self.url}/v2/repo/blobs/uploads/u2?_state=xyz`
            : `${storage.url}/upload/u3?_state=s3`
          return send(res, 202, "", { location })
        }
        if (req.method === "PUT") return send(res, 201, "", { "docker-content-digest": blob.digest })
        return ociError(res, 404, "NOT_FOUND", "?")
      })
      const layer = registryLayer({ registry: fake.host }, basicCredentials(fake.host, "alice", "upl0ad-Passw0rd"))
      const chunks = [data.subarray(0, 1000), data.subarray(1000, 50_000), data.subarray(50_000)]
      yield* withRegistry(layer, (r) => Effect.all([r.putBlob("repo", blob, data), r.putBlob("repo", blob, chunks), r.putBlob("repo", blob, data)]))
      const puts = [...fake.requests, ...storage.requests].filter((r) => r.method === "PUT")
      expect(puts.map((p) => p.path)).toEqual(["/v2/repo/blobs/uploads/u1", "/v2/repo/blobs/uploads/u2", "/upload/u3"])
      expect(puts[0]!.query.get("_state")).toBe("abc+def==")
      expect(puts[0]!.query.get("extra")).toBe("1")
      expect(puts[0]!.url).toMatch(/\?_state=abc%2Bdef%3D%3D&extra=1&digest=sha256%3A[0-9a-f]{64}$/)
      expect(puts[1]!.query.get("_state")).toBe("xyz")
      expect(puts[2]!.query.get("_state")).toBe("s3")
      for (const put of puts) {
        expect(put.query.get("digest")).toBe(blob.digest)
        expect(put.headers["content-type"]).toBe("application/octet-stream")
        expect(put.headers["content-length"]).toBe(String(data.byteLength))
        expect(put.headers["transfer-encoding"]).toBeUndefined()
        expect(put.body.equals(Buffer.from(data))).toBe(true)
      }
      // The registry's credentials went to the registry only, not to the upload service elsewhere.
      expect(puts[0]!.headers.authorization).toBe(auth)
      expect(puts[1]!.headers.authorization).toBe(auth)
      expect(puts[2]!.headers.authorization).toBeUndefined()
    }))
})

// ---------------------------------------------------------------------------------------------
// TLS and addresses
// ---------------------------------------------------------------------------------------------

describe("TLS", () => {
  const roundTrip = (options: Options, name: string) =>
    withRegistry(registryLayer(options), (r) =>
      Effect.gen(function*() {
        const repository = repoName(name)
        const pushed = yield* pushArtifact(repository, "v1", `over tls: ${name}`)
        return Option.map(yield* r.getManifest(repository, "v1"), (m) => m.digest === pushed.digest)
      }).pipe(Effect.provideService(Registry, r)))

  it.live("an untrusted certificate is a tagged error (not a defect, not retried)", () =>
    Effect.gen(function*() {
      const start = Date.now()
      const exit = yield* Effect.exit(roundTrip({ registry: tlsRegistry.url, retry: { maxRetries: 3, waitMin: "1 second" } }, "tls-untrusted"))
      expect(Exit.isFailure(exit)).toBe(true)
      if (Exit.isFailure(exit)) {
        expect(Cause.isDie(exit.cause)).toBe(false)
        const error = Option.getOrThrow(Cause.failureOption(exit.cause))
        expect(error._tag).toBe("RegistryError")
        expect(error.message).toMatch(/certificate/i)
      }
      expect(Date.now() - start).toBeLessThan(900)
    }))

  it.live("caFile adds the test CA (system roots kept); insecure skips verification", () =>
    Effect.gen(function*() {
      expect(yield* roundTrip({ registry: tlsRegistry.url, caFile: fixturePath("tls-ca.crt") }, "tls-ca")).toEqual(Option.some(true))
      expect(yield* roundTrip({ registry: tlsRegistry.url, insecure: true }, "tls-insecure")).toEqual(Option.some(true))
      // `localhost` is in the certificate too.
      const viaLocalhost = `https://localhost:${tlsRegistry.host.split(":")[1]}`
      expect(yield* roundTrip({ registry: viaLocalhost, caFile: fixturePath("tls-ca.crt") }, "tls-localhost")).toEqual(Option.some(true))
      const missing = yield* Effect.flip(Layer.build(registryLayer({ registry: tlsRegistry.url, caFile: "/nonexistent/ca.pem" })).pipe(Effect.scoped))
      expect(missing).toMatchObject({ _tag: "InvalidConfig", key: "ca_file" })
      const notPem = yield* Effect.flip(Layer.build(registryLayer({ registry: tlsRegistry.url, caFile: fixturePath("htpasswd") })).pipe(Effect.scoped))
      expect(notPem).toMatchObject({ _tag: "InvalidConfig", key: "ca_file" })
    }))

  it.live("https to a plain-http registry fails with a tagged error", () =>
    Effect.gen(function*() {
      const exit = yield* Effect.exit(roundTrip({ registry: `https://${registries.plain.host}` }, "tls-to-plain"))
      expect(Exit.isFailure(exit) && !Cause.isDie(exit.cause)).toBe(true)
    }))
})

describe("parseEndpoint", () => {
  it.effect("http to a non-loopback host is refused unless plainHttp", () =>
    Effect.gen(function*() {
      const refused = yield* Effect.flip(HttpRegistry.parseEndpoint("http://registry.example.com"))
      expect(refused).toMatchObject({ _tag: "InvalidConfig", key: "registry" })
      expect(yield* HttpRegistry.parseEndpoint("http://registry.example.com:5000", true)).toEqual({
        origin: "http://registry.example.com:5000",
        host: "registry.example.com:5000"
      })
      expect(yield* HttpRegistry.parseEndpoint("registry.example.com")).toEqual({
        origin: "https://registry.example.com",
        host: "registry.example.com"
      })
    }))

  it.effect("loopback without a scheme uses http; an explicit https is kept", () =>
    Effect.gen(function*() {
      expect(yield* HttpRegistry.parseEndpoint("127.0.0.1:5000")).toEqual({ origin: "http://127.0.0.1:5000", host: "127.0.0.1:5000" })
      expect(yield* HttpRegistry.parseEndpoint("localhost:5000/")).toEqual({ origin: "http://localhost:5000", host: "localhost:5000" })
      expect(yield* HttpRegistry.parseEndpoint("[::1]:5000")).toEqual({ origin: "http://[::1]:5000", host: "[::1]:5000" })
      expect(yield* HttpRegistry.parseEndpoint("https://127.0.0.1:5443")).toEqual({ origin: "https://127.0.0.1:5443", host: "127.0.0.1:5443" })
      expect(yield* HttpRegistry.parseEndpoint("http://127.0.0.1:5000")).toEqual({ origin: "http://127.0.0.1:5000", host: "127.0.0.1:5000" })
    }))

  it.effect("docker.io maps to registry-1.docker.io; paths and other schemes are refused", () =>
    Effect.gen(function*() {
      for (const hub of ["docker.io", "index.docker.io", "https://registry-1.docker.io"]) {
        expect(yield* HttpRegistry.parseEndpoint(hub)).toEqual({ origin: "https://registry-1.docker.io", host: "docker.io" })
      }
      for (const bad of ["ghcr.io/owner/repo", "ftp://registry.example", "https://registry.example?x=1", "", "http://[bad"]) {
        expect((yield* Effect.flip(HttpRegistry.parseEndpoint(bad)))._tag).toBe("InvalidConfig")
      }
    }))
})
