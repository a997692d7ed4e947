/**
 * Wire compatibility with ghoten, both ways:
 * - golden repositories written as ghoten G0–G3 write them (ghoten.ts) are read by our backend;
 * - everything our backend writes passes ghoten's strict read rules (ghotenRules.ts).
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Option, TestClock } from "effect"
import * as LockInfo from "../../src/LockInfo.js"
import * as StateBackend from "../../src/StateBackend.js"
import * as WireFormat from "../../src/WireFormat.js"
import { type Generation, ghotenClient, lockInfo } from "./ghoten.js"
import { checkLockManifest, checkRepository, checkStateManifest, checkUnlockedMarker } from "./ghotenRules.js"
import { memoryRegistry, repository, str, tagsOf, text, tfState } from "./support.js"

const backend = (options: Partial<StateBackend.Options> = {}) => StateBackend.make({ repository, ...options })

const stateOf = (b: StateBackend.Service, workspace: string) =>
  Effect.flatMap(b.stateManager(workspace), (sm) => Effect.map(sm.get, (o) => Option.map(o, (p) => str(p.data))))

// 2026-01-10T12:00:00Z + 1 hour, in Unix nanoseconds (beyond 2^53).
const leaseExpiry = 1_768_050_000n * 1_000_000_000n

describe("golden ghoten repositories are read correctly", () => {
  const cases: ReadonlyArray<{ readonly gen: Generation; readonly gzip: boolean }> = [
    { gen: "G0", gzip: false },
    { gen: "G1", gzip: false },
    { gen: "G1", gzip: true },
    { gen: "G2", gzip: false },
    { gen: "G2", gzip: true },
    { gen: "G3", gzip: false },
    { gen: "G3", gzip: true }
  ]

  for (const { gen, gzip } of cases) {
    const label = `${gen} ${gzip ? "gzip" : "plain"}`
    // G0/G1 store the workspace name only on hashed workspaces: their old-form version tags of a
    // literal name are ambiguous (they may be the state of workspace `<name>-v<N>`).
    const annotated = gen === "G2" || gen === "G3"
    const versioned = gen !== "G0"

    it.effect(`${label}: get, workspaces, versions, getVersion and lockInfo`, () =>
      Effect.gen(function*() {
        const ghoten = ghotenClient(gen, repository, { gzip, versioning: true })
        for (const serial of [1, 2, 3]) yield* ghoten.put("default", tfState(serial, { serial: String(serial) }))
        for (const serial of [1, 2]) yield* ghoten.put("my workspace", tfState(10 + serial))
        yield* ghoten.put("a/b", tfState(20))
        yield* ghoten.put("dev", tfState(30))
        if (annotated) yield* ghoten.put("dev-v9", tfState(40))
        // A held lock on dev; default released on a registry without DELETE (marker).
        yield* ghoten.lock("dev", lockInfo("0b6f1d0e-ghoten-holder"), { leaseExpiryNanos: leaseExpiry, generation: 2 })
        yield* ghoten.lock("default", lockInfo("old-holder"))
        yield* ghoten.releaseOn405("default")

        const tags = yield* tagsOf()
        expect(tags).toContain("state-ws-052c7440eea985d3")
        if (versioned) expect(tags).toContain("state-default-v3")

        const b = yield* backend()
        expect(yield* stateOf(b, "default")).toEqual(Option.some(str(tfState(3, { serial: "3" }))))
        expect(yield* stateOf(b, "my workspace")).toEqual(Option.some(str(tfState(12))))
        expect(yield* stateOf(b, "a/b")).toEqual(Option.some(str(tfState(20))))
        expect(yield* stateOf(b, "dev")).toEqual(Option.some(str(tfState(30))))
        expect(yield* b.workspaces).toEqual(
          annotated ? ["a/b", "default", "dev", "dev-v9", "my workspace"] : ["a/b", "default", "dev", "my workspace"]
        )
        const outputs = Option.getOrThrow(yield* Effect.flatMap(b.stateManager("default"), (sm) => sm.outputs))
        expect(outputs["serial"]?.value).toBe("3")

        // Versions from the old-form tags, where the workspace annotation proves them.
        const defaultSm = yield* b.stateManager("default")
        const hashedSm = yield* b.stateManager("my workspace")
        const devSm = yield* b.stateManager("dev")
        if (annotated) {
          const versions = yield* defaultSm.versions
          expect(versions.map((v) => [v.version, v.current])).toEqual([[1, false], [2, false], [3, true]])
          expect(versions.every((v) => v.updatedAt !== undefined && v.updatedAt.endsWith(".995222Z"))).toBe(true)
          expect(str(Option.getOrThrow(yield* defaultSm.getVersion(2)).data)).toBe(str(tfState(2, { serial: "2" })))
          // `state-dev-v9` is workspace dev-v9's state, not version 9 of dev.
          expect((yield* devSm.versions).map((v) => v.version)).toEqual([1])
          expect(yield* devSm.getVersion(9)).toEqual(Option.none())
        } else {
          expect(yield* defaultSm.versions).toEqual([])
          expect(yield* defaultSm.getVersion(2)).toEqual(Option.none())
        }
        if (versioned) {
          // Hashed names carry the annotation in every generation.
          expect((yield* hashedSm.versions).map((v) => v.version)).toEqual([1, 2])
          expect(str(Option.getOrThrow(yield* hashedSm.getVersion(1)).data)).toBe(str(tfState(11)))
        }

        // The ghoten lock on dev is held; default's lock was released (marker).
        const held = Option.getOrThrow(yield* devSm.lockInfo)
        expect(held.ours).toBe(false)
        expect(held.info).toEqual(LockInfo.make({ ...lockInfo("0b6f1d0e-ghoten-holder"), Path: "state-dev" }))
        if (gen === "G3") expect(held.expiresAt).toBe(1_768_050_000_000)
        expect(yield* defaultSm.lockInfo).toEqual(Option.none())
        const conflict = yield* Effect.flip(devSm.lock(LockInfo.make({ ID: "ours" })))
        expect(conflict._tag).toBe("LockConflict")
        expect(conflict._tag === "LockConflict" && conflict.info.ID).toBe("0b6f1d0e-ghoten-holder")
        expect((yield* Effect.flip(b.deleteWorkspace("dev")))._tag).toBe("LockConflict")
        const lockId = yield* defaultSm.lock(LockInfo.make({ ID: "ours" }))
        yield* defaultSm.unlock(lockId)
      }).pipe(Effect.scoped, Effect.provide(memoryRegistry())))

    it.effect(`${label}: our puts continue ghoten's version numbering without touching its tags`, () =>
      Effect.gen(function*() {
        const ghoten = ghotenClient(gen, repository, { gzip, versioning: true })
        for (const serial of [1, 2, 3]) yield* ghoten.put("default", tfState(serial))
        for (const serial of [1, 2]) yield* ghoten.put("my workspace", tfState(serial))
        const before = yield* tagsOf()
        const b = yield* backend({ versioning: { enabled: true }, compression: gzip ? "gzip" : "none" })
        const sm = yield* b.stateManager("default")
        const put = yield* sm.put(tfState(4))
        // G3 numbers from the annotation, G2 from its (annotated) version tags; G0/G1 versions of a
        // literal name are not provably ours, so ours start at 1 in the `stver-` namespace.
        expect(put.version).toBe(annotated ? 4 : 1)
        const hashed = yield* b.stateManager("my workspace")
        expect((yield* hashed.put(tfState(3))).version).toBe(versioned ? 3 : 1)
        const after = yield* tagsOf()
        expect(after.filter((t) => !before.includes(t)).sort()).toEqual(
          [`stver-default-v${annotated ? 4 : 1}`, `stver-ws-052c7440eea985d3-v${versioned ? 3 : 1}`]
        )
        if (annotated) expect((yield* sm.versions).map((v) => v.version)).toEqual([1, 2, 3, 4])
        expect(str(Option.getOrThrow(yield* sm.get).data)).toBe(str(tfState(4)))
      }).pipe(Effect.scoped, Effect.provide(memoryRegistry())))
  }

  it.effect("G2 lock without lease, and G0 lock with the opentofu names, are held", () =>
    Effect.gen(function*() {
      yield* ghotenClient("G2", repository).lock("prod", lockInfo("g2-holder"))
      yield* ghotenClient("G0", repository).lock("my workspace", lockInfo("g0-holder"))
      const b = yield* backend()
      const prod = Option.getOrThrow(yield* Effect.flatMap(b.stateManager("prod"), (sm) => sm.lockInfo))
      expect(prod.info.ID).toBe("g2-holder")
      expect(prod.expiresAt).toBeUndefined()
      const hashed = Option.getOrThrow(yield* Effect.flatMap(b.stateManager("my workspace"), (sm) => sm.lockInfo))
      expect(hashed.info.ID).toBe("g0-holder")
      expect(hashed.info.Path).toBe("state-ws-052c7440eea985d3")
    }).pipe(Effect.scoped, Effect.provide(memoryRegistry())))

  it.effect("a G3 lock whose lease expired is free for a backend with lock_ttl", () =>
    Effect.gen(function*() {
      yield* ghotenClient("G3", repository).lock("prod", lockInfo("expired"), { leaseExpiryNanos: leaseExpiry, generation: 5 })
      const b = yield* backend({ lockTtl: "1 minute" })
      yield* TestClock.setTime(1_768_050_000_000 - 1)
      expect(Option.isSome(yield* Effect.flatMap(b.stateManager("prod"), (sm) => sm.lockInfo))).toBe(true)
      yield* TestClock.setTime(1_768_050_000_000 + 1)
      expect(yield* Effect.flatMap(b.stateManager("prod"), (sm) => sm.lockInfo)).toEqual(Option.none())
    }).pipe(Effect.scoped, Effect.provide(memoryRegistry())))
})

describe("what we write passes ghoten's strict read rules", () => {
  const names = ["default", "dev", "my workspace", "a/b", "x".repeat(110), "y".repeat(111), "feature-v2"]

  const scenario = Effect.gen(function*() {
    // Real-world timestamps (the lease is checked to be Unix nanoseconds).
    yield* TestClock.setTime(Date.parse("2026-01-10T12:00:00.250Z"))
    const gz = yield* backend({ compression: "gzip", versioning: { enabled: true, maxVersions: 3 }, lockTtl: "10 minutes" })
    const raw = yield* backend({ versioning: { enabled: true } })
    for (const [i, name] of names.entries()) {
      const sm = yield* (i % 2 === 0 ? gz : raw).stateManager(name)
      yield* sm.put(tfState(1, { name }))
      yield* sm.put(tfState(2, { name }))
      yield* sm.put(new Uint8Array(0))
    }
    const dev = yield* gz.stateManager("dev")
    yield* dev.restore(1)
    yield* dev.lock(LockInfo.make({ ID: "lock-dev", Operation: "OperationTypeApply", Who: "me@host", Version: "1.9.0" }))
    const hashed = yield* raw.stateManager("my workspace")
    yield* hashed.lock(LockInfo.make({ ID: "lock-hashed" }))
    yield* gz.awaitRetention
  })

  const checkAll = Effect.gen(function*() {
    const report = yield* checkRepository(repository, names, WireFormat.workspaceTag)
    expect(report.violations).toEqual([])
    return report
  })

  it.effect("state manifests, version tags, lock manifests and lock candidates", () =>
    Effect.gen(function*() {
      yield* scenario
      const report = yield* checkAll
      const kinds = new Set(report.checked.map((c) => c.kind))
      expect([...kinds].sort()).toEqual(["candidate", "lock", "state", "version"])
      expect(report.checked.filter((c) => c.kind === "state").length).toBe(names.length)
      expect(report.checked.filter((c) => c.kind === "lock").map((c) => c.tag).sort()).toEqual(
        ["locked-dev", "locked-ws-052c7440eea985d3"]
      )
    }).pipe(Effect.scoped, Effect.provide(memoryRegistry())))

  it.effect("the released marker and retired candidates on a registry without DELETE", () =>
    Effect.gen(function*() {
      const b = yield* backend()
      for (const name of ["default", "a/b"]) {
        const sm = yield* b.stateManager(name)
        yield* sm.put(tfState(1))
        const id = yield* sm.lock(LockInfo.make({ ID: `lock-${name}` }))
        yield* sm.unlock(id)
      }
      const report = yield* checkAll
      expect(report.checked.filter((c) => c.kind === "marker").map((c) => c.tag).sort()).toEqual([
        "locked-default",
        "locked-ws-c14cddc033f64b9d",
        ...report.checked.filter((c) => c.tag.startsWith("lockc-")).map((c) => c.tag),
        "unlocked-default",
        "unlocked-ws-c14cddc033f64b9d"
      ].sort())
      // And a ghoten client reads the marker as "free".
      const lock = yield* Effect.flatMap(b.stateManager("default"), (sm) => sm.lockInfo)
      expect(lock).toEqual(Option.none())
    }).pipe(Effect.scoped, Effect.provide(memoryRegistry({ quirks: { deleteUnsupported: true } }))))

  it.effect("the detached copy of a version made by delete on a registry without tag deletion", () =>
    Effect.gen(function*() {
      const b = yield* backend({ versioning: { enabled: true } })
      const sm = yield* b.stateManager("dev")
      yield* sm.put(tfState(1))
      yield* sm.put(tfState(2))
      yield* sm.delete
      const report = yield* checkRepository(repository, ["dev"], WireFormat.workspaceTag)
      expect(report.violations).toEqual([])
      expect(report.checked.map((c) => c.tag)).toEqual(["stver-dev-v1", "stver-dev-v2"])
    }).pipe(Effect.scoped, Effect.provide(memoryRegistry({ quirks: { tagDeleteUnsupported: true } }))))

  it("the checker rejects what ghoten would reject", () => {
    const ok = ghotenState()
    expect(checkStateManifest(ok, { workspace: "dev", version: 2 })).toEqual([])
    expect(checkStateManifest(ghotenState({ artifactType: "application/vnd.opentofu.state.v1" }), { workspace: "dev" }).length).toBe(1)
    expect(checkStateManifest(ghotenState({ layerMediaType: "application/octet-stream" }), { workspace: "dev" }).length).toBe(1)
    expect(checkStateManifest(ghotenState({ updatedAt: "2026-01-10T12:00:00.500Z" }), { workspace: "dev" }).length).toBe(1)
    expect(checkStateManifest(ghotenState({ updatedAt: "2026-01-10 12:00:00" }), { workspace: "dev" }).length).toBe(1)
    expect(checkStateManifest(ok, { workspace: "dev", version: 3 }).length).toBe(1)
    expect(checkStateManifest(ok, { workspace: "prod" }).length).toBe(1)
    const lock = (info: string, generation = "{\"generation\":1,\"holder_id\":\"id\"}") =>
      text(JSON.stringify({
        schemaVersion: 2,
        mediaType: "application/vnd.oci.image.manifest.v1+json",
        artifactType: "application/vnd.terraform.lock.v1",
        config: { mediaType: "application/vnd.oci.empty.v1+json", digest: "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a", size: 2 },
        layers: [{ mediaType: "application/vnd.oci.empty.v1+json", digest: "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a", size: 2 }],
        annotations: {
          "org.terraform.lock.generation": generation,
          "org.terraform.lock.id": "id",
          "org.terraform.lock.info": info,
          "org.terraform.workspace": "dev"
        }
      }))
    const info = (fields: Record<string, string>) => JSON.stringify(fields)
    const good = { ID: "id", Operation: "", Info: "", Who: "", Version: "", Created: "2026-01-10T12:00:00Z", Path: "state-dev" }
    expect(checkLockManifest(lock(info(good)), { workspace: "dev", stateTag: "state-dev" })).toEqual([])
    expect(checkLockManifest(lock(info({ ...good, Path: "org/repo" })), { workspace: "dev", stateTag: "state-dev" }).length).toBe(1)
    expect(checkLockManifest(lock(info({ ...good, Created: "yesterday" })), { workspace: "dev", stateTag: "state-dev" }).length).toBe(1)
    expect(checkLockManifest(lock(info({ id: "id", ...good })), { workspace: "dev", stateTag: "state-dev" }).length).toBe(1)
    expect(checkLockManifest(lock(info(good), "{\"holder_id\":\"id\",\"generation\":1}"), { workspace: "dev", stateTag: "state-dev" }).length)
      .toBe(1)
    expect(checkLockManifest(lock(info(good), "{\"generation\":1,\"lease_expiry\":1768050000000}"), { workspace: "dev", stateTag: "state-dev" }).length)
      .toBe(1)
    expect(checkUnlockedMarker(lock(""), { workspace: "dev" }).length).toBeGreaterThan(0)
  })
})

const ghotenState = (o: { artifactType?: string; layerMediaType?: string; updatedAt?: string } = {}) =>
  text(JSON.stringify({
    schemaVersion: 2,
    mediaType: "application/vnd.oci.image.manifest.v1+json",
    artifactType: o.artifactType ?? "application/vnd.terraform.state.v1",
    config: { mediaType: "application/vnd.oci.empty.v1+json", digest: "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a", size: 2, data: "e30=" },
    layers: [{ mediaType: o.layerMediaType ?? "application/vnd.terraform.statefile.v1+gzip", digest: `sha256:${"a".repeat(64)}`, size: 36 }],
    annotations: {
      "org.opencontainers.image.created": "2026-09-30T16:30:42Z",
      "org.terraform.state.updated_at": o.updatedAt ?? "2026-09-30T16:30:42.995222Z",
      "org.terraform.state.version": "2",
      "org.terraform.workspace": "dev"
    }
  }))
