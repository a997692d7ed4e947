/**
 * `GitHubPackages` against a fake GitHub REST API (node:http on 127.0.0.1).
 */
import * as FetchHttpClient from "@effect/platform/FetchHttpClient"
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "@effect/vitest"
import { Effect, Layer, Redacted } from "effect"
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http"
import type { AddressInfo } from "node:net"
import * as Credentials from "../src/Credentials.js"
import type { Credential } from "../src/Credentials.js"
import * as Digest from "../src/Digest.js"
import * as GitHubPackages from "../src/GitHubPackages.js"
import { assertNoSecrets } from "./support/credentialFixtures.js"

interface FakeVersion {
  readonly id: number
  readonly name: string
  readonly tags: ReadonlyArray<string>
}

interface Recorded {
  readonly method: string
  readonly path: string
  readonly page: string | null
  readonly perPage: string | null
  readonly headers: IncomingMessage["headers"]
}

const TOKEN = "ghp_fakeToken1234567890"

/** The fake API's state: packages per `orgs|users/owner/pkg`, and knobs for failures. */
const api = {
  packages: new Map<string, Array<FakeVersion>>(),
  requests: [] as Array<Recorded>,
  /** Status to answer DELETE with (default 204). */
  deleteStatus: 204,
  /** Statuses to answer the next requests with, before behaving normally. */
  failNext: [] as Array<{ status: number; headers?: Record<string, string> }>,
  scopes: "read:packages, write:packages"
}

const handle = (req: IncomingMessage, res: ServerResponse) => {
  const url = new URL(req.url ?? "/", "http://127.0.0.1")
  api.requests.push({
    method: req.method ?? "",
    path: url.pathname,
    page: url.searchParams.get("page"),
    perPage: url.searchParams.get("per_page"),
    headers: req.headers
  })
  const send = (status: number, body?: unknown, headers: Record<string, string> = {}) => {
    res.writeHead(status, { "content-type": "application/json", "x-oauth-scopes": api.scopes, ...headers })
    res.end(body === undefined ? undefined : JSON.stringify(body))
  }
  if (req.headers.authorization !== `Bearer ${TOKEN}`) return send(401, { message: "Bad credentials" })
  const injected = api.failNext.shift()
  if (injected !== undefined) return send(injected.status, { message: "injected" }, injected.headers)
  // /{orgs|users}/{owner}/packages/container/{pkg}/versions[/{id}] — the raw (encoded) path
  const match = /^\/api\/v3\/(orgs|users)\/([^/]+)\/packages\/container\/([^/]+)\/versions(?:\/(\d+))?$/.exec(url.pathname)
  if (match === null) return send(404, { message: "Not Found" })
  const [, kind, owner, pkg, id] = match
  const versions = api.packages.get(`${kind}/${owner}/${pkg}`)
  if (versions === undefined) return send(404, { message: "Not Found" })
  if (req.method === "GET" && id === undefined) {
    const page = Number(url.searchParams.get("page") ?? "1")
    const perPage = Number(url.searchParams.get("per_page") ?? "30")
    return send(
      200,
      versions.slice((page - 1) * perPage, page * perPage).map((v) => ({
        id: v.id,
        name: v.name,
        url: `https://api.github.com/${kind}/${owner}/packages/container/${pkg}/versions/${v.id}`,
        package_html_url: "https://github.com/x",
        created_at: "2026-01-01T00:00:00Z",
        metadata: { package_type: "container", container: { tags: v.tags } }
      }))
    )
  }
  if (req.method === "DELETE" && id !== undefined) {
    const index = versions.findIndex((v) => v.id === Number(id))
    if (index < 0) return send(404, { message: "Not Found" })
    if (api.deleteStatus !== 204) {
      return send(api.deleteStatus, { message: "You need at least delete:packages scope" }, {
        "x-accepted-oauth-scopes": "delete:packages"
      })
    }
    versions.splice(index, 1)
    res.writeHead(204)
    return res.end()
  }
  return send(405, { message: "Method Not Allowed" })
}

let server: Server
let apiBaseUrl = ""

beforeAll(async () => {
  server = createServer(handle)
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  apiBaseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/api/v3/`
})

afterAll(async () => {
  await new Promise<void>((resolve) => server.close(() => resolve()))
})

beforeEach(() => {
  api.packages.clear()
  api.requests.length = 0
  api.deleteStatus = 204
  api.failNext.length = 0
  api.scopes = "read:packages, write:packages"
})

const digestOf = (s: string) => Digest.sha256(new TextEncoder().encode(s))

const versionsFrom = (count: number, firstId = 1): Array<FakeVersion> =>
  Array.from({ length: count }, (_, i) => ({
    id: firstId + i,
    name: digestOf(`v${firstId + i}`),
    tags: [`stver-default-v${firstId + i}`]
  }))

const credential: Credential = { _tag: "AccessToken", token: Redacted.make(TOKEN) }

const layer = (
  options: GitHubPackages.Options = {},
  credentials: Layer.Layer<Credentials.Credentials> = Credentials.layerStatic({ "ghcr.io": credential })
) =>
  GitHubPackages.layer({ apiBaseUrl, retry: { maxRetries: 0 }, ...options }).pipe(
    Layer.provide(credentials),
    Layer.provide(FetchHttpClient.layer)
  )

const deleteVersion = (repository: string, tag: string, digest: Digest.Digest) =>
  Effect.flatMap(GitHubPackages.GitHubPackages, (g) => g.deleteVersion(repository, tag, digest))

describe("GitHubPackages.deleteVersion (fake GitHub API)", () => {
  it.live("org package: lists, matches tag and digest, deletes with the GitHub headers", () =>
    Effect.gen(function*() {
      const versions = versionsFrom(3)
      api.packages.set("orgs/acme/infra%2Fprod%2Fstate", versions)
      const target = versions[1]!
      const deleted = yield* deleteVersion("acme/infra/prod/state", target.tags[0]!, target.name as Digest.Digest).pipe(
        Effect.provide(layer())
      )
      expect(deleted).toBe(true)
      expect(api.packages.get("orgs/acme/infra%2Fprod%2Fstate")!.map((v) => v.id)).toEqual([1, 3])
      expect(api.requests.map((r) => `${r.method} ${r.path}`)).toEqual([
        "GET /api/v3/orgs/acme/packages/container/infra%2Fprod%2Fstate/versions",
        "DELETE /api/v3/orgs/acme/packages/container/infra%2Fprod%2Fstate/versions/2"
      ])
      for (const r of api.requests) {
        expect(r.headers["accept"]).toBe("application/vnd.github+json")
        expect(r.headers["x-github-api-version"]).toBe("2022-11-28")
        expect(r.headers["authorization"]).toBe(`Bearer ${TOKEN}`)
      }
      expect(api.requests[0]!.perPage).toBe("100")
      expect(api.requests[0]!.page).toBe("1")
    }))

  it.live("user package: the org endpoint's 404 falls back to /users/{owner}", () =>
    Effect.gen(function*() {
      api.packages.set("users/alice/tfstate", versionsFrom(2))
      const deleted = yield* deleteVersion("alice/tfstate", "stver-default-v1", digestOf("v1")).pipe(
        Effect.provide(layer())
      )
      expect(deleted).toBe(true)
      expect(api.requests.map((r) => `${r.method} ${r.path}`)).toEqual([
        "GET /api/v3/orgs/alice/packages/container/tfstate/versions",
        "GET /api/v3/users/alice/packages/container/tfstate/versions",
        "DELETE /api/v3/users/alice/packages/container/tfstate/versions/1"
      ])
    }))

  it.live("pagination: reads pages until the match (page 3 of 250 versions)", () =>
    Effect.gen(function*() {
      api.packages.set("orgs/acme/big", versionsFrom(250))
      const deleted = yield* deleteVersion("acme/big", "stver-default-v240", digestOf("v240")).pipe(
        Effect.provide(layer())
      )
      expect(deleted).toBe(true)
      expect(api.requests.filter((r) => r.method === "GET").map((r) => r.page)).toEqual(["1", "2", "3"])
      expect(api.requests.at(-1)!.path).toMatch(/\/versions\/240$/)
    }))

  it.live("pagination: a short last page ends the search (false); an exact multiple needs the empty page", () =>
    Effect.gen(function*() {
      api.packages.set("orgs/acme/short", versionsFrom(150))
      expect(yield* deleteVersion("acme/short", "nope", digestOf("nope")).pipe(Effect.provide(layer()))).toBe(false)
      expect(api.requests.map((r) => r.page)).toEqual(["1", "2"])
      api.requests.length = 0
      api.packages.set("orgs/acme/exact", versionsFrom(200))
      expect(yield* deleteVersion("acme/exact", "nope", digestOf("nope")).pipe(Effect.provide(layer()))).toBe(false)
      expect(api.requests.map((r) => r.page)).toEqual(["1", "2", "3"])
    }))

  it.live("pagination has an upper bound", () =>
    Effect.gen(function*() {
      api.packages.set("orgs/acme/huge", versionsFrom(500))
      const error = yield* Effect.flip(
        deleteVersion("acme/huge", "nope", digestOf("nope")).pipe(Effect.provide(layer({ maxPages: 3 })))
      )
      expect(error._tag).toBe("RegistryError")
      expect(error.message).toContain("more than 3 pages")
      expect(api.requests).toHaveLength(3)
    }))

  it.live("a version with the tag but another digest is NOT deleted; nor one with the digest but not the tag", () =>
    Effect.gen(function*() {
      const digest = digestOf("expected")
      api.packages.set("orgs/acme/pkg", [
        { id: 1, name: digestOf("moved"), tags: ["state-default"] },
        { id: 2, name: digest, tags: ["other-tag"] }
      ])
      const deleted = yield* deleteVersion("acme/pkg", "state-default", digest).pipe(Effect.provide(layer()))
      expect(deleted).toBe(false)
      expect(api.requests.filter((r) => r.method === "DELETE")).toHaveLength(0)
      expect(api.packages.get("orgs/acme/pkg")).toHaveLength(2)
    }))

  it.live("404 everywhere (no such package) is false", () =>
    Effect.gen(function*() {
      expect(yield* deleteVersion("ghost/pkg", "t", digestOf("x")).pipe(Effect.provide(layer()))).toBe(false)
      expect(api.requests.map((r) => r.path.split("/")[3])).toEqual(["orgs", "users"])
    }))

  it.live("DELETE 403: Unauthorized naming delete:packages, never the token", () =>
    Effect.gen(function*() {
      api.packages.set("orgs/acme/pkg", versionsFrom(1))
      api.deleteStatus = 403
      const error = yield* Effect.flip(
        deleteVersion("acme/pkg", "stver-default-v1", digestOf("v1")).pipe(Effect.provide(layer()))
      )
      expect(error._tag).toBe("Unauthorized")
      expect(error.message).toContain("delete:packages")
      expect(error.message).toContain("the token has: read:packages, write:packages")
      assertNoSecrets(error, [TOKEN])
    }))

  it.live("listing 401 (bad token): Unauthorized naming the scopes, never the token", () =>
    Effect.gen(function*() {
      const wrong = "ghp_wrongToken0987654321"
      const error = yield* Effect.flip(
        deleteVersion("acme/pkg", "t", digestOf("x")).pipe(
          Effect.provide(layer({}, Credentials.layerStatic({ "ghcr.io": { _tag: "AccessToken", token: Redacted.make(wrong) } })))
        )
      )
      expect(error._tag).toBe("Unauthorized")
      expect(error.message).toContain("read:packages and delete:packages")
      assertNoSecrets(error, [wrong, TOKEN])
    }))

  it.live("the token may be a Basic password (docker login ghcr.io); no credentials is a CredentialsError", () =>
    Effect.gen(function*() {
      api.packages.set("orgs/acme/pkg", versionsFrom(1))
      const basic = Credentials.layerStatic({
        "ghcr.io/acme": { _tag: "Basic", username: "bot", password: Redacted.make(TOKEN) }
      })
      expect(
        yield* deleteVersion("acme/pkg", "stver-default-v1", digestOf("v1")).pipe(Effect.provide(layer({}, basic)))
      ).toBe(true)
      const none = yield* Effect.flip(
        deleteVersion("acme/pkg", "t", digestOf("x")).pipe(Effect.provide(layer({}, Credentials.layerNone)))
      )
      expect(none._tag).toBe("CredentialsError")
      expect(none.message).toContain("delete:packages")
    }))

  it.live("429 / 5xx / rate-limit 403 are TransientRegistry, and retried", () =>
    Effect.gen(function*() {
      api.packages.set("orgs/acme/pkg", versionsFrom(1))
      api.failNext.push({ status: 503 })
      const e503 = yield* Effect.flip(deleteVersion("acme/pkg", "t", digestOf("x")).pipe(Effect.provide(layer())))
      expect(e503._tag).toBe("TransientRegistry")
      api.failNext.push({ status: 429, headers: { "retry-after": "7" } })
      const e429 = yield* Effect.flip(deleteVersion("acme/pkg", "t", digestOf("x")).pipe(Effect.provide(layer())))
      expect(e429._tag).toBe("TransientRegistry")
      if (e429._tag === "TransientRegistry") expect(e429.retryAfterMillis).toBe(7000)
      api.failNext.push({ status: 403, headers: { "x-ratelimit-remaining": "0" } })
      const limited = yield* Effect.flip(deleteVersion("acme/pkg", "t", digestOf("x")).pipe(Effect.provide(layer())))
      expect(limited._tag).toBe("TransientRegistry")
      // with retries: a 502 then success
      api.failNext.push({ status: 502 })
      const deleted = yield* deleteVersion("acme/pkg", "stver-default-v1", digestOf("v1")).pipe(
        Effect.provide(layer({ retry: { maxRetries: 2, waitMin: "10 millis", jitter: false } }))
      )
      expect(deleted).toBe(true)
    }))

  it.live("invalid repository, tag or digest fail before any request", () =>
    Effect.gen(function*() {
      const noOwner = yield* Effect.flip(deleteVersion("pkg", "t", digestOf("x")).pipe(Effect.provide(layer())))
      expect(noOwner.message).toContain("owner/package")
      const badTag = yield* Effect.flip(deleteVersion("acme/pkg", "bad tag", digestOf("x")).pipe(Effect.provide(layer())))
      expect(badTag._tag).toBe("InvalidReference")
      expect(api.requests).toHaveLength(0)
    }))
})
