/**
 * The state store on a real registry (CNCF distribution 2.8, plain HTTP): the behavioural suite,
 * ghoten's read rules on what we wrote, a golden ghoten repository, and `skopeo inspect --raw`.
 */
import { describe, expect, inject, it } from "@effect/vitest"
import { Effect, Layer, Option } from "effect"
import { execFile } from "node:child_process"
import * as Credentials from "../../src/Credentials.js"
import * as HttpRegistry from "../../src/HttpRegistry.js"
import * as LockInfo from "../../src/LockInfo.js"
import * as RateLimiter from "../../src/RateLimiter.js"
import * as StateBackend from "../../src/StateBackend.js"
import * as WireFormat from "../../src/WireFormat.js"
import { ghotenClient, lockInfo } from "../state/ghoten.js"
import { checkRepository, rfc3339Nano } from "../state/ghotenRules.js"
import { stateSuite } from "../state/stateSuite.js"
import { str, tfState } from "../state/support.js"

const registries = inject("registries")
const run = `r${Date.now().toString(36)}${Math.floor(Math.random() * 1e4).toString(36)}`
let counter = 0
const uniqueRepository = (name: string) => `${run}/state/${name}-${++counter}`

const httpRegistry = () =>
  HttpRegistry.layerNode({ registry: registries.plain.host, retry: { maxRetries: 0 } }).pipe(
    Layer.provide(Credentials.layerNone),
    Layer.provide(RateLimiter.layerUnlimited)
  )

describe("state suite on distribution 2.8", () => {
  stateSuite({ clock: "live", registry: httpRegistry, repository: uniqueRepository })
})

const skopeoRaw = (repository: string, tag: string) =>
  Effect.async<string, Error>((resume) => {
    const child = execFile(
      "skopeo",
      ["inspect", "--raw", "--tls-verify=false", `docker://${registries.plain.host}/${repository}:${tag}`],
      { timeout: 30_000 },
      (error, stdout, stderr) => resume(error === null ? Effect.succeed(stdout) : Effect.fail(new Error(`${error.message}: ${stderr}`)))
    )
    return Effect.sync(() => child.kill())
  })

interface RawManifest {
  readonly mediaType: string
  readonly artifactType: string
  readonly config: { readonly mediaType: string; readonly digest: string; readonly size: number }
  readonly layers: ReadonlyArray<{ readonly mediaType: string; readonly digest: string; readonly size: number }>
  readonly annotations: Readonly<Record<string, string>>
}

describe("what we write, seen by other tools on a real registry", () => {
  it.live("skopeo inspect --raw shows the artifact type, layer media type and annotations", () =>
    Effect.gen(function*() {
      const repository = uniqueRepository("skopeo")
      const backend = yield* StateBackend.make({ repository, compression: "gzip", versioning: { enabled: true } })
      const sm = yield* backend.stateManager("my workspace")
      yield* sm.put(tfState(1))
      const put = yield* sm.put(tfState(2))
      const lockId = yield* sm.lock(LockInfo.make({ ID: "skopeo-lock", Who: "ci@runner", Operation: "OperationTypePlan" }))

      const state = JSON.parse(yield* skopeoRaw(repository, "state-ws-052c7440eea985d3")) as RawManifest
      expect(state.mediaType).toBe("application/vnd.oci.image.manifest.v1+json")
      expect(state.artifactType).toBe("application/vnd.terraform.state.v1")
      expect(state.config.mediaType).toBe("application/vnd.oci.empty.v1+json")
      expect(state.config.digest).toBe("sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a")
      expect(state.layers.map((l) => l.mediaType)).toEqual(["application/vnd.terraform.statefile.v1+gzip"])
      expect(state.annotations["org.terraform.workspace"]).toBe("my workspace")
      expect(state.annotations["org.terraform.state.version"]).toBe("2")
      expect(state.annotations["org.terraform.state.updated_at"]).toMatch(rfc3339Nano)
      expect(state.annotations["org.opencontainers.image.created"]).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/)

      const version = JSON.parse(yield* skopeoRaw(repository, "stver-ws-052c7440eea985d3-v2")) as RawManifest
      expect(version).toEqual(state)
      const v1 = JSON.parse(yield* skopeoRaw(repository, "stver-ws-052c7440eea985d3-v1")) as RawManifest
      expect(v1.annotations["org.terraform.state.version"]).toBe("1")
      expect(state.annotations["io.oras-state.state.parent"]).toBeDefined()
      expect(put.version).toBe(2)

      const lock = JSON.parse(yield* skopeoRaw(repository, "locked-ws-052c7440eea985d3")) as RawManifest
      expect(lock.artifactType).toBe("application/vnd.terraform.lock.v1")
      expect(lock.layers.map((l) => l.mediaType)).toEqual(["application/vnd.oci.empty.v1+json"])
      expect(lock.annotations["org.terraform.workspace"]).toBe("my workspace")
      expect(lock.annotations["org.terraform.lock.id"]).toBe(lockId)
      const info = JSON.parse(lock.annotations["org.terraform.lock.info"]!) as Record<string, string>
      expect(Object.keys(info)).toEqual(["ID", "Operation", "Info", "Who", "Version", "Created", "Path"])
      expect(info).toMatchObject({ ID: "skopeo-lock", Operation: "OperationTypePlan", Who: "ci@runner", Path: "state-ws-052c7440eea985d3" })
      expect(lock.annotations["org.terraform.lock.generation"]).toMatch(/^\{"generation":1(,"lease_expiry":\d+)?,"holder_id":"skopeo-lock"\}$/)
      yield* sm.unlock(lockId)
    }).pipe(Effect.scoped, Effect.provide(httpRegistry())))

  it.live("everything a scenario writes passes ghoten's strict read rules", () =>
    Effect.gen(function*() {
      const repository = uniqueRepository("ghoten-rules")
      const names = ["default", "my workspace", "a/b", "feature-v2", "z".repeat(111)]
      const gz = yield* StateBackend.make({ repository, compression: "gzip", versioning: { enabled: true, maxVersions: 2 }, lockTtl: "5 minutes" })
      const raw = yield* StateBackend.make({ repository, versioning: { enabled: true } })
      for (const [i, name] of names.entries()) {
        const sm = yield* (i % 2 === 0 ? gz : raw).stateManager(name)
        for (const serial of [1, 2, 3]) yield* sm.put(tfState(serial))
      }
      yield* Effect.flatMap(gz.stateManager("default"), (sm) => sm.lock(LockInfo.make({ ID: "held" })))
      yield* Effect.flatMap(raw.stateManager("a/b"), (sm) => Effect.flatMap(sm.restore(2), () => sm.delete))
      yield* gz.awaitRetention
      const report = yield* checkRepository(repository, names, WireFormat.workspaceTag)
      expect(report.violations).toEqual([])
      expect(report.checked.length).toBeGreaterThan(10)
    }).pipe(Effect.scoped, Effect.provide(httpRegistry())))

  it.live("a ghoten G3 repository on the real registry is read: state, workspaces, versions, lock", () =>
    Effect.gen(function*() {
      const repository = uniqueRepository("ghoten-g3")
      const ghoten = ghotenClient("G3", repository, { gzip: true, versioning: true })
      for (const serial of [1, 2, 3]) yield* ghoten.put("my workspace", tfState(serial))
      yield* ghoten.put("default", tfState(9))
      yield* ghoten.lock("my workspace", lockInfo("ghoten-holder"), { leaseExpiryNanos: BigInt(Date.now() + 3_600_000) * 1_000_000n })
      const backend = yield* StateBackend.make({ repository, versioning: { enabled: true } })
      expect(yield* backend.workspaces).toEqual(["default", "my workspace"])
      const sm = yield* backend.stateManager("my workspace")
      expect(str(Option.getOrThrow(yield* sm.get).data)).toBe(str(tfState(3)))
      expect((yield* sm.versions).map((v) => v.version)).toEqual([1, 2, 3])
      expect(Option.getOrThrow(yield* sm.lockInfo).info.ID).toBe("ghoten-holder")
      expect((yield* Effect.flip(sm.lock(LockInfo.make({ ID: "ours" }))))._tag).toBe("LockConflict")
    }).pipe(Effect.scoped, Effect.provide(httpRegistry())))
})
