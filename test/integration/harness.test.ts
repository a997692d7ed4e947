/**
 * Proves the integration harness (test/support/*) with plain fetch, independently of the library:
 * the three registries from globalSetup accept an OCI push/pull, auth is enforced as configured,
 * and the token server issues tokens distribution 2.8 accepts and counts them in /stats.
 */
import { createHash } from "node:crypto"
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest"
import { startTokenServer } from "../support/tokenServer.js"
import type { RunningTokenServer, TokenStats } from "../support/tokenServer.js"

const registries = inject("registries")

const OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
const EMPTY_CONFIG = new TextEncoder().encode("{}")
const EMPTY_CONFIG_DIGEST = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"

type Mode = "plain" | "htpasswd" | "token"
type Headers = Record<string, string>

const sha256 = (bytes: Uint8Array): string => `sha256:${createHash("sha256").update(bytes).digest("hex")}`
const basic = (username: string, password: string): string =>
  `Basic ${Buffer.from(`${username}:${password}`).toString("base64")}`

interface TokenResponse {
  readonly token: string
  readonly access_token: string
  readonly expires_in: number
  readonly issued_at: string
  readonly refresh_token?: string
}

interface AccessClaim {
  readonly type: string
  readonly name: string
  readonly actions: ReadonlyArray<string>
}

/** GET /token with optional Basic credentials, one `scope=` parameter per scope. */
async function getToken(
  tokenServerUrl: string,
  scopes: ReadonlyArray<string>,
  credentials?: { readonly username: string; readonly password: string }
): Promise<Response> {
  const url = new URL("/token", tokenServerUrl)
  url.searchParams.set("service", "oras-state-test-registry")
  for (const scope of scopes) url.searchParams.append("scope", scope)
  const headers: Headers = credentials === undefined ? {} : { Authorization: basic(credentials.username, credentials.password) }
  return fetch(url, { headers })
}

async function bearerFor(scopes: ReadonlyArray<string>, username: string, password: string): Promise<Headers> {
  const res = await getToken(registries.tokenServerUrl, scopes, { username, password })
  expect(res.status).toBe(200)
  const body = (await res.json()) as TokenResponse
  return { Authorization: `Bearer ${body.token}` }
}

function decodeAccess(jwt: string): ReadonlyArray<AccessClaim> {
  const claims = JSON.parse(Buffer.from(jwt.split(".")[1] ?? "", "base64url").toString("utf8")) as {
    readonly access: ReadonlyArray<AccessClaim>
  }
  return claims.access
}

async function authFor(mode: Mode, repo: string): Promise<Headers> {
  switch (mode) {
    case "plain":
      return {}
    case "htpasswd":
      return { Authorization: basic(registries.htpasswd.username, registries.htpasswd.password) }
    case "token":
      return bearerFor([`repository:${repo}:pull,push`], registries.token.username, registries.token.password)
  }
}

/** Monolithic upload: POST → 202 + Location, then PUT Location&digest=… with the bytes. */
async function uploadBlob(baseUrl: string, repo: string, bytes: Uint8Array<ArrayBuffer>, auth: Headers): Promise<string> {
  const post = await fetch(`${baseUrl}/v2/${repo}/blobs/uploads/`, { method: "POST", headers: auth })
  expect(post.status).toBe(202)
  const location = post.headers.get("location")
  expect(location).toBeTruthy()
  // Location already carries `?_state=…`; URL appends `&digest=` and resolves relative Locations.
  const putUrl = new URL(location ?? "", baseUrl)
  const digest = sha256(bytes)
  putUrl.searchParams.set("digest", digest)
  const put = await fetch(putUrl, {
    method: "PUT",
    // octet-stream is required: a form content type makes distribution eat the body (DIGEST_INVALID).
    headers: { ...auth, "Content-Type": "application/octet-stream" },
    body: bytes
  })
  expect(put.status).toBe(201)
  expect(put.headers.get("docker-content-digest")).toBe(digest)
  return digest
}

/** Makes sure `harness/token` holds the empty config blob, so pull checks don't depend on test order. */
async function seedTokenRepo(): Promise<void> {
  await uploadBlob(registries.token.url, "harness/token", EMPTY_CONFIG, await authFor("token", "harness/token"))
}

function buildManifest(layer: Uint8Array): Uint8Array<ArrayBuffer> {
  const manifest = {
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    artifactType: "application/vnd.oras-state.harness.v1",
    config: { mediaType: "application/vnd.oci.empty.v1+json", digest: EMPTY_CONFIG_DIGEST, size: EMPTY_CONFIG.length },
    layers: [{ mediaType: "application/octet-stream", digest: sha256(layer), size: layer.length }]
  }
  return new TextEncoder().encode(JSON.stringify(manifest))
}

async function tokenStats(tokenServerUrl: string): Promise<TokenStats> {
  const res = await fetch(`${tokenServerUrl}/stats`)
  expect(res.status).toBe(200)
  return (await res.json()) as TokenStats
}

/** Token requests that mention `repoPrefix`; robust against other test files using the same server. */
async function countTokenRequests(repoPrefix: string): Promise<number> {
  const { requests } = await tokenStats(registries.tokenServerUrl)
  return requests.filter((r) => r.scopes.some((s) => s.includes(`:${repoPrefix}`))).length
}

describe("registry harness", () => {
  it("provides all three registries on 127.0.0.1", () => {
    for (const mode of ["plain", "htpasswd", "token"] as const) {
      expect(registries[mode].host).toMatch(/^127\.0\.0\.1:\d+$/)
      expect(registries[mode].url).toBe(`http://${registries[mode].host}`)
    }
    expect(registries.token.tokenServerUrl).toBe(registries.tokenServerUrl)
  })

  it.each(["plain", "htpasswd", "token"] as const)("%s: pushes blobs and a manifest, reads it back", async (mode) => {
    const { url } = registries[mode]
    const repo = `harness/${mode}`
    const auth = await authFor(mode, repo)

    const layer = new TextEncoder().encode(`{"harness":"${mode}","at":${Date.now()}}`)
    expect(await uploadBlob(url, repo, EMPTY_CONFIG, auth)).toBe(EMPTY_CONFIG_DIGEST)
    await uploadBlob(url, repo, layer, auth)

    const manifest = buildManifest(layer)
    const put = await fetch(`${url}/v2/${repo}/manifests/latest`, {
      method: "PUT",
      headers: { ...auth, "Content-Type": OCI_MANIFEST },
      body: manifest
    })
    expect(put.status).toBe(201)
    expect(put.headers.get("docker-content-digest")).toBe(sha256(manifest))

    // distribution 2.8 hides OCI manifests (404) unless Accept names the OCI media type.
    const get = await fetch(`${url}/v2/${repo}/manifests/latest`, { headers: { ...auth, Accept: OCI_MANIFEST } })
    expect(get.status).toBe(200)
    expect(get.headers.get("content-type")).toBe(OCI_MANIFEST)
    expect(new Uint8Array(await get.arrayBuffer())).toEqual(manifest)

    const blob = await fetch(`${url}/v2/${repo}/blobs/${sha256(layer)}`, { headers: auth })
    expect(blob.status).toBe(200)
    expect(new Uint8Array(await blob.arrayBuffer())).toEqual(layer)
  })

  it("htpasswd: rejects a wrong password and anonymous access with a Basic challenge", async () => {
    const { url, username } = registries.htpasswd
    const wrong = await fetch(`${url}/v2/`, { headers: { Authorization: basic(username, "wrong-password") } })
    expect(wrong.status).toBe(401)
    const anonymous = await fetch(`${url}/v2/`)
    expect(anonymous.status).toBe(401)
    expect(anonymous.headers.get("www-authenticate")).toMatch(/^Basic realm="/)
  })

  it("token: rejects an anonymous push with a Bearer challenge, and an anonymous token with insufficient_scope", async () => {
    const { url } = registries.token
    const noAuth = await fetch(`${url}/v2/harness/token/blobs/uploads/`, { method: "POST" })
    expect(noAuth.status).toBe(401)
    const challenge = noAuth.headers.get("www-authenticate") ?? ""
    expect(challenge).toContain(`Bearer realm="${registries.tokenServerUrl}/token"`)
    expect(challenge).toContain('service="oras-state-test-registry"')
    expect(challenge).toMatch(/scope="repository:harness\/token:(push,pull|pull,push)"/)

    const anonToken = await getToken(registries.tokenServerUrl, ["repository:harness/token:pull,push"])
    expect(anonToken.status).toBe(200)
    const { token } = (await anonToken.json()) as TokenResponse
    expect(decodeAccess(token)).toEqual([])
    const withAnonToken = await fetch(`${url}/v2/harness/token/blobs/uploads/`, {
      method: "POST",
      headers: { Authorization: `Bearer ${token}` }
    })
    expect(withAnonToken.status).toBe(401)
    expect(withAnonToken.headers.get("www-authenticate")).toContain('error="insufficient_scope"')
  })

  it("token: Basic credentials sent to the registry itself are not accepted", async () => {
    const { url, username, password } = registries.token
    const res = await fetch(`${url}/v2/`, { headers: { Authorization: basic(username, password) } })
    expect(res.status).toBe(401)
    expect(res.headers.get("www-authenticate")).toMatch(/^Bearer /)
  })

  it("token: the reader may pull but not push", async () => {
    const { url, readerUsername, readerPassword } = registries.token
    const repo = "harness/token"
    await seedTokenRepo()
    const auth = await bearerFor([`repository:${repo}:pull,push`], readerUsername, readerPassword)
    const push = await fetch(`${url}/v2/${repo}/blobs/uploads/`, { method: "POST", headers: auth })
    expect(push.status).toBe(401)
    expect(push.headers.get("www-authenticate")).toContain('error="insufficient_scope"')
    const pull = await fetch(`${url}/v2/${repo}/blobs/${EMPTY_CONFIG_DIGEST}`, { headers: auth })
    expect(pull.status).toBe(200)
  })

  it("token: /stats counts token requests", async () => {
    const before = await countTokenRequests("harness/stats")
    const credentials = { username: registries.token.username, password: registries.token.password }
    await getToken(registries.tokenServerUrl, ["repository:harness/stats:pull"], credentials)
    await getToken(registries.tokenServerUrl, ["repository:harness/stats:pull", "repository:harness/stats2:push"])
    expect(await countTokenRequests("harness/stats")).toBe(before + 2)

    const { requests } = await tokenStats(registries.tokenServerUrl)
    const last = requests.at(-1)
    expect(last).toEqual({
      method: "GET",
      scopes: ["repository:harness/stats:pull", "repository:harness/stats2:push"],
      user: null,
      grant_type: null,
      status: 200
    })
  })
})

describe("token server (private instance)", () => {
  let server: RunningTokenServer

  beforeAll(async () => {
    server = await startTokenServer({ expiresIn: 120 })
  })
  afterAll(async () => {
    await server.stop()
  })

  const postToken = (form: Record<string, string>): Promise<Response> =>
    fetch(`${server.url}/token`, { method: "POST", body: new URLSearchParams(form) })

  it("answers 401 for a wrong password, GET and POST", async () => {
    const get = await getToken(server.url, ["repository:a/b:pull"], { username: "tfuser", password: "nope" })
    expect(get.status).toBe(401)
    const post = await postToken({ grant_type: "password", username: "tfuser", password: "nope", service: server.service })
    expect(post.status).toBe(401)
  })

  it("grants the intersection of requested and allowed actions", async () => {
    const scopes = ["repository:team/app:pull,push,delete", "repository:public/base:pull,push", "registry:catalog:*"]
    const grants = async (credentials?: { username: string; password: string }): Promise<ReadonlyArray<AccessClaim>> => {
      const res = await getToken(server.url, scopes, credentials)
      expect(res.status).toBe(200)
      return decodeAccess(((await res.json()) as TokenResponse).token)
    }
    expect(await grants({ username: "tfuser", password: "s3cret-pass" })).toEqual([
      { type: "repository", name: "team/app", actions: ["pull", "push", "delete"] },
      { type: "repository", name: "public/base", actions: ["pull", "push"] },
      { type: "registry", name: "catalog", actions: ["*"] }
    ])
    expect(await grants({ username: "reader", password: "r3ad-only" })).toEqual([
      { type: "repository", name: "team/app", actions: ["pull"] },
      { type: "repository", name: "public/base", actions: ["pull"] }
    ])
    expect(await grants()).toEqual([{ type: "repository", name: "public/base", actions: ["pull"] }])
  })

  it("supports the OAuth2 password and refresh_token grants, and the tokens work on the registry", async () => {
    const repo = "harness/token"
    await seedTokenRepo()
    const first = await postToken({
      grant_type: "password",
      username: "tfuser",
      password: "s3cret-pass",
      service: server.service,
      client_id: "oras-state-tests",
      access_type: "offline",
      scope: `repository:${repo}:pull`
    })
    expect(first.status).toBe(200)
    const firstBody = (await first.json()) as TokenResponse
    expect(firstBody.expires_in).toBe(120)
    expect(firstBody.access_token).toBe(firstBody.token)
    expect(Number.isNaN(Date.parse(firstBody.issued_at))).toBe(false)
    expect(firstBody.refresh_token).toBeTruthy()

    const refreshed = await postToken({
      grant_type: "refresh_token",
      refresh_token: firstBody.refresh_token ?? "",
      service: server.service,
      scope: `repository:${repo}:pull repository:${repo}:push`
    })
    expect(refreshed.status).toBe(200)
    const refreshedBody = (await refreshed.json()) as TokenResponse
    expect(refreshedBody.refresh_token).toBeUndefined()
    expect(decodeAccess(refreshedBody.token)).toEqual([{ type: "repository", name: repo, actions: ["pull", "push"] }])

    // Same key, issuer and service as the shared server, so the shared token registry accepts it.
    const pull = await fetch(`${registries.token.url}/v2/${repo}/blobs/${EMPTY_CONFIG_DIGEST}`, {
      headers: { Authorization: `Bearer ${refreshedBody.token}` }
    })
    expect(pull.status).toBe(200)

    const badRefresh = await postToken({ grant_type: "refresh_token", refresh_token: "not-a-token" })
    expect(badRefresh.status).toBe(400)
  })

  it("records requests in /stats and clears them on /stats/reset", async () => {
    await postToken({ grant_type: "password", username: "reader", password: "r3ad-only", scope: "repository:x/y:pull" })
    const { requests } = await tokenStats(server.url)
    expect(requests.at(-1)).toEqual({
      method: "POST",
      scopes: ["repository:x/y:pull"],
      user: "reader",
      grant_type: "password",
      status: 200
    })
    const reset = await fetch(`${server.url}/stats/reset`, { method: "POST" })
    expect(reset.status).toBe(204)
    expect((await tokenStats(server.url)).requests).toEqual([])
  })
})
