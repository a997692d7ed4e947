/**
 * Interoperability: what `HttpRegistry` pushes is what another OCI client (skopeo 1.9) reads back,
 * byte for byte, on the plain and the htpasswd distribution 2.8 registries.
 */
import { describe, expect, inject, it } from "@effect/vitest"
import { Effect, Layer, Redacted } from "effect"
import { execFile } from "node:child_process"
import { createHash } from "node:crypto"
import { existsSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as Credentials from "../../src/Credentials.js"
import * as HttpRegistry from "../../src/HttpRegistry.js"
import * as RateLimiter from "../../src/RateLimiter.js"
import { MediaType, Registry } from "../../src/Registry.js"
import { pushArtifact } from "../support/registrySuite.js"

const registries = inject("registries")
const run = `k${Date.now().toString(36)}`
const SKOPEO = process.env["SKOPEO_BIN"] ?? "/usr/bin/skopeo"
// A missing auth file: skopeo uses only the --creds given, never the machine's logins.
const NO_AUTH_FILE = join(tmpdir(), `oras-state-skopeo-${run}-no-auth.json`)

/** Runs skopeo; stdout as a Buffer (the manifest must not go through a text decoding). */
const skopeo = (args: ReadonlyArray<string>) =>
  Effect.async<Buffer, Error>((resume) => {
    const child = execFile(
      SKOPEO,
      [...args],
      { encoding: "buffer", timeout: 30_000, env: { ...process.env, REGISTRY_AUTH_FILE: NO_AUTH_FILE } },
      (error, stdout, stderr) =>
        resume(
          error === null
            ? Effect.succeed(stdout)
            : Effect.fail(new Error(`skopeo ${args[0]} failed: ${error.message}\n${stderr.toString("utf8")}`))
        )
    )
    return Effect.sync(() => child.kill())
  })

const sha256 = (bytes: Uint8Array) => `sha256:${createHash("sha256").update(bytes).digest("hex")}`

const cases = [
  {
    name: "plain",
    registry: registries.plain,
    credentials: Credentials.layerNone,
    creds: [] as ReadonlyArray<string>
  },
  {
    name: "htpasswd",
    registry: registries.htpasswd,
    credentials: Credentials.layerStatic({
      [registries.htpasswd.host]: {
        _tag: "Basic",
        username: registries.htpasswd.username,
        password: Redacted.make(registries.htpasswd.password)
      }
    }),
    creds: ["--creds", `${registries.htpasswd.username}:${registries.htpasswd.password}`]
  }
] as const

describe.skipIf(!existsSync(SKOPEO))("skopeo reads what HttpRegistry pushed", () => {
  for (const c of cases) {
    it.live(`${c.name}: inspect --raw returns the exact manifest bytes; list-tags lists the tags`, () =>
      Effect.gen(function*() {
        const repository = `${run}/skopeo/${c.name}`
        const layer = HttpRegistry.layerNode({ registry: c.registry.host, retry: { maxRetries: 0 } }).pipe(
          Layer.provide(c.credentials),
          Layer.provide(RateLimiter.layerUnlimited)
        )
        const pushed = yield* Effect.gen(function*() {
          const registry = yield* Registry
          const first = yield* pushArtifact(repository, "v1", `state for ${c.name}`, { "org.example.kind": "state" })
          yield* registry.putManifest(repository, "latest", { mediaType: MediaType.ociManifest, bytes: first.manifest })
          const second = yield* pushArtifact(repository, "v2", `newer state for ${c.name}`)
          return { first, second }
        }).pipe(Effect.provide(layer))

        const image = (tag: string) => `docker://${c.registry.host}/${repository}:${tag}`
        const common = ["--tls-verify=false", ...c.creds]
        const v1 = yield* skopeo(["inspect", "--raw", ...common, image("v1")])
        expect(sha256(v1)).toBe(pushed.first.digest)
        expect(v1.equals(Buffer.from(pushed.first.manifest))).toBe(true)
        const latest = yield* skopeo(["inspect", "--raw", ...common, image("latest")])
        expect(sha256(latest)).toBe(pushed.first.digest)
        const v2 = yield* skopeo(["inspect", "--raw", ...common, image("v2")])
        expect(sha256(v2)).toBe(pushed.second.digest)
        // By digest as well.
        const byDigest = yield* skopeo([
          "inspect",
          "--raw",
          ...common,
          `docker://${c.registry.host}/${repository}@${pushed.second.digest}`
        ])
        expect(byDigest.equals(Buffer.from(pushed.second.manifest))).toBe(true)

        const listed = JSON.parse(
          (yield* skopeo(["list-tags", ...common, `docker://${c.registry.host}/${repository}`])).toString("utf8")
        ) as { Repository: string; Tags: ReadonlyArray<string> }
        expect(listed.Repository).toBe(`${c.registry.host}/${repository}`)
        expect([...listed.Tags].sort()).toEqual(["latest", "v1", "v2"])
      }))
  }

  it.live("htpasswd: skopeo without credentials is refused (the push really needed them)", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(skopeo([
        "list-tags",
        "--tls-verify=false",
        `docker://${registries.htpasswd.host}/${run}/skopeo/htpasswd`
      ]))
      expect(error.message).toMatch(/unauthorized|authentication required|401/i)
    }))
})
