/**
 * The real distribution 2.8 registries (htpasswd and token modes) reached with credentials found
 * only in docker `config.json` files and credential helpers under a temporary HOME; and every error
 * that wrong credentials produce is scanned for the secrets involved.
 */
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import { describe, expect, inject, it } from "@effect/vitest"
import { Cause, Effect, Layer, Option } from "effect"
import * as CredentialHelper from "../../src/CredentialHelper.js"
import * as Credentials from "../../src/Credentials.js"
import * as HttpRegistry from "../../src/HttpRegistry.js"
import * as RateLimiter from "../../src/RateLimiter.js"
import { Registry } from "../../src/Registry.js"
import {
  answering,
  assertNoSecrets,
  basicAuth,
  recordCall,
  tempDir,
  type TempDir
} from "../support/credentialFixtures.js"
import { TOKEN_SERVICE } from "../support/fixtures.js"
import { pushArtifact } from "../support/registrySuite.js"
import type { TokenStats } from "../support/tokenServer.js"

const registries = inject("registries")
const run = `c${Date.now().toString(36)}`

/** HttpRegistry with credentials from the ambient files under `dir` only. */
const registryLayer = (registry: string, dir: TempDir, env: Record<string, string> = {}) =>
  HttpRegistry.layerNode({ registry, retry: { maxRetries: 0 } }).pipe(
    Layer.provide(
      Credentials.layer({ dockerConfig: { env: { HOME: dir.dir, ...env } } }).pipe(
        Layer.provide(CredentialHelper.layerNode({ path: dir.path, timeout: "5 seconds" })),
        Layer.provide(NodeFileSystem.layer)
      )
    ),
    Layer.provide(RateLimiter.layerUnlimited)
  )

/** Push an artifact, read it back by tag. */
const roundTrip = (repository: string) =>
  Effect.gen(function*() {
    const registry = yield* Registry
    const pushed = yield* pushArtifact(repository, "v1", `state of ${repository}`)
    const got = yield* registry.getManifest(repository, "v1")
    expect(Option.getOrThrow(got).digest).toBe(pushed.digest)
  })

const tokenStats = Effect.promise(async () => {
  const response = await fetch(`${registries.tokenServerUrl}/stats`)
  return (await response.json()) as TokenStats
})

/** A refresh token (docker `identitytoken`) from the token server's password grant. */
const refreshTokenFor = (username: string, password: string) =>
  Effect.promise(async () => {
    const form = new URLSearchParams({
      grant_type: "password",
      username,
      password,
      access_type: "offline",
      service: TOKEN_SERVICE,
      client_id: "oras-state-test"
    })
    const response = await fetch(`${registries.tokenServerUrl}/token`, { method: "POST", body: form })
    const body = (await response.json()) as { refresh_token?: string }
    if (body.refresh_token === undefined) throw new Error("no refresh token issued")
    return body.refresh_token
  })

/** A bearer token for one repository (docker `registrytoken`). */
const bearerTokenFor = (repository: string, username: string, password: string) =>
  Effect.promise(async () => {
    const url = new URL(`${registries.tokenServerUrl}/token`)
    url.searchParams.set("service", TOKEN_SERVICE)
    url.searchParams.append("scope", `repository:${repository}:pull,push`)
    const response = await fetch(url, { headers: { authorization: `Basic ${basicAuth(username, password)}` } })
    return ((await response.json()) as { token: string }).token
  })

describe("registry reached with docker config credentials", () => {
  it.scopedLive("htpasswd (Basic): auths[host].auth from ~/.docker/config.json", () =>
    Effect.gen(function*() {
      const r = registries.htpasswd
      const dir = yield* tempDir
      dir.write(".docker/config.json", { auths: { [r.host]: { auth: basicAuth(r.username, r.password) } } })
      yield* roundTrip(`${run}/htpasswd/auth`).pipe(Effect.provide(registryLayer(r.host, dir)))
    }))

  it.scopedLive("htpasswd (Basic): legacy http://host/v2/ key in a containers auth.json", () =>
    Effect.gen(function*() {
      const r = registries.htpasswd
      const dir = yield* tempDir
      dir.write(".config/containers/auth.json", {
        auths: { [`http://${r.host}/v2/`]: { auth: basicAuth(r.username, r.password) } }
      })
      yield* roundTrip(`${run}/htpasswd/legacy`).pipe(Effect.provide(registryLayer(r.host, dir)))
    }))

  it.scopedLive("token mode: credHelpers[host] runs a real helper (once), GET+Basic at the token endpoint", () =>
    Effect.gen(function*() {
      const r = registries.token
      const dir = yield* tempDir
      dir.helper("tftest", `${recordCall(dir, "tftest")}\n${answering({ [r.host]: { username: r.username, secret: r.password } })}`)
      dir.write(".docker/config.json", { auths: { [r.host]: {} }, credHelpers: { [r.host]: "tftest" } })
      yield* roundTrip(`${run}/token/helper`).pipe(Effect.provide(registryLayer(r.host, dir)))
      expect(dir.calls("tftest")).toEqual([r.host])
    }))

  it.scopedLive("token mode: identitytoken → POST grant_type=refresh_token", () =>
    Effect.gen(function*() {
      const r = registries.token
      const dir = yield* tempDir
      const refresh = yield* refreshTokenFor(r.username, r.password)
      dir.write(".docker/config.json", {
        auths: { [r.host]: { auth: basicAuth("00000000-0000-0000-0000-000000000000", ""), identitytoken: refresh } }
      })
      const repository = `${run}/token/identity`
      yield* roundTrip(repository).pipe(Effect.provide(registryLayer(r.host, dir)))
      const stats = yield* tokenStats
      const grants = stats.requests.filter((q) =>
        q.grant_type === "refresh_token" && q.status === 200 && q.scopes.some((s) => s.includes(repository))
      )
      expect(grants.length).toBeGreaterThan(0)
    }))

  it.scopedLive("token mode: registrytoken is sent as the bearer token", () =>
    Effect.gen(function*() {
      const r = registries.token
      const dir = yield* tempDir
      const repository = `${run}/token/bearer`
      const token = yield* bearerTokenFor(repository, r.username, r.password)
      dir.write(".docker/config.json", { auths: { [r.host]: { registrytoken: token } } })
      yield* roundTrip(repository).pipe(Effect.provide(registryLayer(r.host, dir)))
    }))

  it.scopedLive("token mode: DOCKER_AUTH_CONFIG alone is enough", () =>
    Effect.gen(function*() {
      const r = registries.token
      const dir = yield* tempDir
      const env = { DOCKER_AUTH_CONFIG: JSON.stringify({ auths: { [r.host]: { auth: basicAuth(r.username, r.password) } } }) }
      yield* roundTrip(`${run}/token/env`).pipe(Effect.provide(registryLayer(r.host, dir, env)))
    }))
})

describe("no secret in any error produced with wrong credentials", () => {
  const wrongPassword = "wr0ng-Pa55word-zz"
  const wrongToken = "wr0ng-identity-token-zz"
  const helperSecret = "helper-s3cret-zz"
  const fileSecret = "file-s3cret-zz"
  const secrets = [
    wrongPassword,
    wrongToken,
    helperSecret,
    fileSecret,
    basicAuth("tfuser", wrongPassword),
    basicAuth("tfuser", fileSecret),
    registries.htpasswd.password,
    registries.token.password
  ]

  /** The failure of a round trip, checked for secrets in every rendering, including the Cause. */
  const failure = (registry: string, dir: TempDir, name: string) =>
    Effect.gen(function*() {
      const cause = yield* roundTrip(`${run}/secrets/${name}`).pipe(
        Effect.provide(registryLayer(registry, dir)),
        Effect.sandbox,
        Effect.flip
      )
      const error = Cause.squash(cause)
      assertNoSecrets(error, secrets)
      const pretty = Cause.pretty(cause)
      for (const secret of secrets) expect(pretty.includes(secret), `${name}: ${pretty}`).toBe(false)
      expect(Cause.isDie(cause), `${name} died: ${pretty}`).toBe(false)
      expect(Option.isSome(Cause.failureOption(cause)), `${name}: ${pretty}`).toBe(true)
      return error as { readonly _tag: string; readonly message: string }
    })

  it.scopedLive("wrong password (htpasswd and token), wrong identity token, helper and config garbage", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const h = registries.htpasswd
      const t = registries.token
      const errors: Array<{ readonly _tag: string; readonly message: string }> = []
      const config = (content: unknown) => dir.write(".docker/config.json", content)

      config({ auths: { [h.host]: { auth: basicAuth(h.username, wrongPassword) } } })
      errors.push(yield* failure(h.host, dir, "htpasswd-wrong"))
      expect(errors.at(-1)!._tag).toBe("Unauthorized")

      config({ auths: { [t.host]: { username: t.username, password: wrongPassword } } })
      errors.push(yield* failure(t.host, dir, "token-wrong"))
      expect(errors.at(-1)!._tag).toBe("Unauthorized")

      config({ auths: { [t.host]: { identitytoken: wrongToken } } })
      errors.push(yield* failure(t.host, dir, "identity-wrong"))

      // helpers that print secrets and crash, print garbage, or hang
      dir.helper("leaky", `cat >/dev/null\nprintf '{"Username":"tfuser","Secret":"${helperSecret}'\nexit 2`)
      config({ credHelpers: { [t.host]: "leaky" } })
      errors.push(yield* failure(t.host, dir, "helper-crash"))
      expect(errors.at(-1)!._tag).toBe("CredentialsError")

      dir.helper("garbage", `cat >/dev/null\nprintf 'Secret: ${helperSecret} }}}'`)
      config({ credHelpers: { [t.host]: "garbage" } })
      errors.push(yield* failure(t.host, dir, "helper-garbage"))

      dir.helper("wrongpw", `cat >/dev/null\nprintf '{"Username":"tfuser","Secret":"${wrongPassword}"}'`)
      config({ credHelpers: { [h.host]: "wrongpw" } })
      errors.push(yield* failure(h.host, dir, "helper-wrong-password"))
      expect(errors.at(-1)!._tag).toBe("Unauthorized")

      // malformed config files holding secrets
      config(`{"auths": {"${h.host}": {"auth": "${basicAuth("tfuser", fileSecret)}"`)
      errors.push(yield* failure(h.host, dir, "config-not-json"))
      config({ auths: { [h.host]: { username: "tfuser", password: [fileSecret] } } })
      errors.push(yield* failure(h.host, dir, "config-wrong-type"))
      config({ auths: { [h.host]: { auth: `${fileSecret}!` } } })
      errors.push(yield* failure(h.host, dir, "config-bad-base64"))
      for (const e of errors.slice(-3)) expect(e._tag).toBe("CredentialsError")

      expect(errors).toHaveLength(9)
    }))
})
