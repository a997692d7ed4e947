/**
 * Regression tests for the ghoten bugs of research/wire-format.md §H that the state store must not
 * repeat (items 2, 3, 4, 5, 9, 10).
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Option, TestClock } from "effect"
import * as LockInfo from "../../src/LockInfo.js"
import * as MemoryRegistry from "../../src/MemoryRegistry.js"
import * as StateBackend from "../../src/StateBackend.js"
import * as WireFormat from "../../src/WireFormat.js"
import { ghotenClient } from "./ghoten.js"
import { memoryRegistry, repository, requests, str, tagsOf, tfState } from "./support.js"

const backend = (options: Partial<StateBackend.Options> = {}) => StateBackend.make({ repository, ...options })

const data = (sm: StateBackend.StateManager) => Effect.map(sm.get, Option.map((p) => str(p.data)))

describe("§H2 -v<N> name ambiguity", () => {
  it.effect("§H2: workspace foo-v2's state is never a version of foo (versions, getVersion, restore, numbering, retention, listing)", () =>
    Effect.gen(function*() {
      // ghoten G2: foo with old-form version 1, and a workspace literally named foo-v2.
      const ghoten = ghotenClient("G2", repository, { versioning: true })
      yield* ghoten.put("foo", tfState(1, { ws: "foo" }))
      yield* ghoten.put("foo-v2", tfState(1, { ws: "foo-v2" }))
      // ghoten G1: a workspace literally named foo-v3, without a workspace annotation.
      yield* ghotenClient("G1", repository).put("foo-v3", tfState(1, { ws: "foo-v3" }))
      const b = yield* backend({ versioning: { enabled: true, maxVersions: 1 } })
      const foo = yield* b.stateManager("foo")
      expect((yield* foo.versions).map((v) => v.version)).toEqual([1])
      expect(yield* foo.getVersion(2)).toEqual(Option.none())
      expect(yield* foo.getVersion(3)).toEqual(Option.none())
      expect((yield* Effect.flip(foo.restore(2)))._tag).toBe("InvalidReference")
      // Numbering (G2 state has no version annotation: from the tags) is not pushed by state-foo-v2/-v3.
      expect((yield* foo.put(tfState(2, { ws: "foo" }))).version).toBe(2)
      yield* b.awaitRetention
      // Retention of foo (K=1) pruned foo's v1 only.
      const tags = yield* tagsOf()
      expect(tags).toEqual(["state-foo", "state-foo-v2", "state-foo-v2-v1", "state-foo-v3", "stver-foo-v2"])
      expect(yield* data(yield* b.stateManager("foo-v2"))).toEqual(Option.some(str(tfState(1, { ws: "foo-v2" }))))
      expect(yield* data(yield* b.stateManager("foo-v3"))).toEqual(Option.some(str(tfState(1, { ws: "foo-v3" }))))
      // Listing shows foo-v2 (its annotation proves it); foo-v3 is hidden exactly as ghoten hides it.
      expect(yield* b.workspaces).toEqual(["default", "foo", "foo-v2"])
    }).pipe(Effect.scoped, Effect.provide(memoryRegistry())))

  it.effect("§H2: orphan old-form version tags (after the state was deleted) do not surface as phantom workspaces", () =>
    Effect.gen(function*() {
      const ghoten = ghotenClient("G3", repository, { versioning: true })
      for (const serial of [1, 2, 3]) yield* ghoten.put("foo", tfState(serial))
      const b = yield* backend({ versioning: { enabled: true } })
      const foo = yield* b.stateManager("foo")
      expect(yield* foo.delete).toBe(true)
      expect(yield* tagsOf()).toEqual(["state-foo-v1", "state-foo-v2", "state-foo-v3"])
      expect(yield* b.workspaces).toEqual(["default"])
      // The history is still foo's, and a new put continues it.
      expect((yield* foo.versions).map((v) => v.version)).toEqual([1, 2, 3])
      expect((yield* foo.put(tfState(4))).version).toBe(4)
    }).pipe(Effect.scoped, Effect.provide(memoryRegistry())))

  it.effect("§H2: our version tags live in their own namespace (stver-), so foo's versions and foo-v2's state never collide", () =>
    Effect.gen(function*() {
      const b = yield* backend({ versioning: { enabled: true, maxVersions: 2 } })
      const foo = yield* b.stateManager("foo")
      const fooV2 = yield* b.stateManager("foo-v2")
      yield* fooV2.put(tfState(100))
      for (const serial of [1, 2, 3, 4]) yield* foo.put(tfState(serial))
      yield* b.awaitRetention
      expect(yield* data(fooV2)).toEqual(Option.some(str(tfState(100))))
      expect((yield* foo.versions).map((v) => v.version)).toEqual([3, 4])
      expect((yield* fooV2.versions).map((v) => v.version)).toEqual([1])
      expect(yield* b.workspaces).toEqual(["default", "foo", "foo-v2"])
    }).pipe(Effect.scoped, Effect.provide(memoryRegistry())))
})

describe("§H3 DeleteWorkspace prefix bug", () => {
  it.effect("§H3: deleting foo leaves foo-v2 and foo-vbar intact, in both tag forms", () =>
    Effect.gen(function*() {
      const ghoten = ghotenClient("G2", repository, { versioning: true })
      yield* ghoten.put("foo", tfState(1))
      yield* ghoten.put("foo-v2", tfState(2))
      yield* ghoten.put("foo-vbar", tfState(3))
      const b = yield* backend({ versioning: { enabled: true } })
      for (const name of ["foo", "foo-v2", "foo-vbar"]) {
        const sm = yield* b.stateManager(name)
        yield* sm.put(tfState(10))
      }
      const before = yield* tagsOf()
      expect(before).toEqual([
        "state-foo",
        "state-foo-v1",
        "state-foo-v2",
        "state-foo-v2-v1",
        "state-foo-vbar",
        "state-foo-vbar-v1",
        "stver-foo-v2",
        "stver-foo-v2-v2",
        "stver-foo-vbar-v2"
      ])
      yield* b.deleteWorkspace("foo")
      expect(yield* tagsOf()).toEqual(["state-foo-v2", "state-foo-v2-v1", "state-foo-vbar", "state-foo-vbar-v1", "stver-foo-v2-v2", "stver-foo-vbar-v2"])
      for (const name of ["foo-v2", "foo-vbar"]) {
        const sm = yield* b.stateManager(name)
        expect(yield* data(sm)).toEqual(Option.some(str(tfState(10))))
        expect((yield* sm.versions).map((v) => v.version)).toEqual([1, 2])
      }
    }).pipe(Effect.scoped, Effect.provide(memoryRegistry())))

  it("§H3: version tags are matched exactly, never by prefix", () => {
    expect(WireFormat.parseVersionTag("foo", "stver-foo-v2")).toBe(2)
    expect(WireFormat.parseVersionTag("foo", "stver-foo-vbar-v1")).toBeUndefined()
    expect(WireFormat.parseVersionTag("foo", "stver-foo-v2-v1")).toBeUndefined()
    expect(WireFormat.parseVersionTag("foo", "stver-foo-v007")).toBeUndefined()
    expect(WireFormat.parseVersionTag("foo", "stver-foo-v0")).toBeUndefined()
    expect(WireFormat.parseVersionTag("foo", "stver-foo-v1073741825")).toBeUndefined()
    expect(WireFormat.parseVersionTag("foo", "stver-foo-v1073741824")).toBe(2 ** 30)
    expect(WireFormat.isWorkspaceTag("foo", "state-foo-v2")).toBe(false)
    expect(WireFormat.isWorkspaceTag("foo", "locked-foo-v2")).toBe(false)
    expect(WireFormat.isWorkspaceTag("foo", "locked-foo")).toBe(true)
    expect(WireFormat.isWorkspaceTag("foo", "unlocked-foo")).toBe(true)
  })
})

describe("§H4 aliasing of a literal ws-<hash> name and a hashed name", () => {
  it.effect("§H4: the literal workspace ws-c14cddc033f64b9d never reads, overwrites or deletes a/b's state", () =>
    Effect.gen(function*() {
      expect(WireFormat.workspaceTag("a/b")).toBe("ws-c14cddc033f64b9d")
      expect(WireFormat.workspaceTag("ws-c14cddc033f64b9d")).toBe("ws-c14cddc033f64b9d")
      const b = yield* backend({ versioning: { enabled: true } })
      const ab = yield* b.stateManager("a/b")
      yield* ab.put(tfState(1))
      yield* ab.put(tfState(2))
      const alias = yield* b.stateManager("ws-c14cddc033f64b9d")
      expect((yield* Effect.flip(alias.get))._tag).toBe("CorruptState")
      expect((yield* Effect.flip(alias.put(tfState(99))))._tag).toBe("CorruptState")
      expect((yield* Effect.flip(alias.versions))._tag).toBe("CorruptState")
      expect((yield* Effect.flip(alias.delete))._tag).toBe("CorruptState")
      yield* b.deleteWorkspace("ws-c14cddc033f64b9d")
      expect(yield* data(ab)).toEqual(Option.some(str(tfState(2))))
      expect((yield* ab.versions).map((v) => v.version)).toEqual([1, 2])
      expect(yield* b.workspaces).toEqual(["a/b", "default"])
      // Also with a lock of a/b in place: forced deletion of the alias leaves a/b's lock.
      const lockId = yield* ab.lock(LockInfo.make({ ID: "ab-lock" }))
      yield* b.deleteWorkspace("ws-c14cddc033f64b9d", { force: true })
      expect(yield* data(ab)).toEqual(Option.some(str(tfState(2))))
      expect(Option.getOrThrow(yield* ab.lockInfo).info.ID).toBe(lockId)
      // and a/b's holder still writes under its lock.
      expect((yield* ab.put(tfState(3), { lockId })).version).toBe(3)
      yield* ab.unlock(lockId)
      expect(yield* ab.lockInfo).toEqual(Option.none())
    }).pipe(Effect.scoped, Effect.provide(memoryRegistry())))

  it.effect("§H4: and the other way round: a/b cannot read or overwrite the literal workspace", () =>
    Effect.gen(function*() {
      const b = yield* backend()
      const alias = yield* b.stateManager("ws-c14cddc033f64b9d")
      yield* alias.put(tfState(1))
      const ab = yield* b.stateManager("a/b")
      expect((yield* Effect.flip(ab.get))._tag).toBe("CorruptState")
      expect((yield* Effect.flip(ab.put(tfState(2))))._tag).toBe("CorruptState")
      expect(yield* data(alias)).toEqual(Option.some(str(tfState(1))))
      expect(yield* b.workspaces).toEqual(["default", "ws-c14cddc033f64b9d"])
    }).pipe(Effect.scoped, Effect.provide(memoryRegistry())))
})

describe("§H5 tag length", () => {
  it("§H5: every tag derived from any name fits in 128 characters (names of 1–300 characters)", () => {
    for (let length = 1; length <= 300; length++) {
      const name = "n".repeat(length)
      const wsTag = WireFormat.workspaceTag(name)
      const tags = [
        WireFormat.stateTag(wsTag),
        WireFormat.lockTag(wsTag),
        WireFormat.unlockedTag(wsTag),
        WireFormat.versionTag(wsTag, WireFormat.maxVersion),
        WireFormat.legacyVersionTag(wsTag, WireFormat.maxVersion)
      ]
      for (const tag of tags) expect(tag.length, `${tag} (name of ${length})`).toBeLessThanOrEqual(128)
      expect(wsTag === name).toBe(length <= 110)
    }
  })

  it.effect("§H5: names of 110, 111, 122 and 128 characters work end to end (versions, lock, 405 marker)", () =>
    Effect.gen(function*() {
      const b = yield* backend({ versioning: { enabled: true, maxVersions: 2 } })
      const names = [110, 111, 122, 128].map((n) => "w".repeat(n))
      for (const name of names) {
        const sm = yield* b.stateManager(name)
        for (const serial of [1, 2, 3]) yield* sm.put(tfState(serial))
        const id = yield* sm.lock(LockInfo.make({ ID: `lock-${name.length}` }))
        yield* sm.unlock(id)
        expect(yield* data(sm)).toEqual(Option.some(str(tfState(3))))
      }
      yield* b.awaitRetention
      const tags = yield* tagsOf()
      expect(tags.every((t) => t.length <= 128)).toBe(true)
      expect(tags).toContain(`state-${"w".repeat(110)}`)
      expect(tags).toContain(`unlocked-${"w".repeat(110)}`)
      expect(tags.filter((t) => t.includes("w".repeat(111)))).toEqual([])
      expect(yield* b.workspaces).toEqual(["default", ...names].sort())
    }).pipe(Effect.scoped, Effect.provide(memoryRegistry({ quirks: { deleteUnsupported: true } }))))
})

describe("§H9 version numbering on a transient failure", () => {
  it.effect("§H9: a transient failure reading the current state fails the put; numbering never restarts at 1", () =>
    Effect.gen(function*() {
      const control = yield* MemoryRegistry.MemoryRegistryControl
      const b = yield* backend({ versioning: { enabled: true } })
      const sm = yield* b.stateManager("default")
      for (const serial of [1, 2, 3]) yield* sm.put(tfState(serial))
      const before = yield* tagsOf()
      yield* control.setFaults(MemoryRegistry.failFirst(1, { status: 503 }, (r) => r.operation === "getManifest" && r.reference === "state-default"))
      expect((yield* Effect.flip(sm.put(tfState(4))))._tag).toBe("TransientRegistry")
      expect(yield* tagsOf()).toEqual(before)
      expect((yield* sm.put(tfState(4))).version).toBe(4)
    }).pipe(Effect.scoped, Effect.provide(memoryRegistry())))

  it.effect("§H9: a legacy state numbered from its tags: a transient failure of the scan fails the put", () =>
    Effect.gen(function*() {
      const control = yield* MemoryRegistry.MemoryRegistryControl
      const ghoten = ghotenClient("G2", repository, { versioning: true })
      for (const serial of [1, 2, 3]) yield* ghoten.put("default", tfState(serial))
      const b = yield* backend({ versioning: { enabled: true } })
      const sm = yield* b.stateManager("default")
      for (const fault of [
        (r: MemoryRegistry.RequestRecord) => r.operation === "listTags",
        (r: MemoryRegistry.RequestRecord) => r.operation === "getManifest" && r.reference === "state-default-v3"
      ]) {
        yield* control.setFaults(MemoryRegistry.failFirst(1, { status: 503 }, fault))
        expect((yield* Effect.flip(sm.put(tfState(4))))._tag).toBe("TransientRegistry")
        expect((yield* tagsOf()).filter((t) => t.startsWith("stver-"))).toEqual([])
      }
      expect((yield* sm.put(tfState(4))).version).toBe(4)
    }).pipe(Effect.scoped, Effect.provide(memoryRegistry())))

  it.effect("§H9: after the state was deleted, a put continues the history (and fails rather than guess)", () =>
    Effect.gen(function*() {
      const control = yield* MemoryRegistry.MemoryRegistryControl
      const b = yield* backend({ versioning: { enabled: true } })
      const sm = yield* b.stateManager("default")
      const first = yield* sm.put(tfState(1))
      yield* sm.put(tfState(2))
      yield* sm.delete
      yield* control.setFaults(MemoryRegistry.failFirst(1, { status: 503 }, (r) => r.operation === "listTags"))
      expect((yield* Effect.flip(sm.put(tfState(3))))._tag).toBe("TransientRegistry")
      expect((yield* sm.put(tfState(3))).version).toBe(3)
      expect((yield* control.tags(repository)).get("stver-default-v1")).toBe(first.digest)
    }).pipe(Effect.scoped, Effect.provide(memoryRegistry())))

  it.effect("§H9: versions fails on a transient error instead of returning a shortened history", () =>
    Effect.gen(function*() {
      const control = yield* MemoryRegistry.MemoryRegistryControl
      const b = yield* backend({ versioning: { enabled: true } })
      const sm = yield* b.stateManager("default")
      for (const serial of [1, 2, 3]) yield* sm.put(tfState(serial))
      yield* control.setFaults(MemoryRegistry.failFirst(1, { status: 503 }, (r) => r.operation === "getManifest" && r.reference === "stver-default-v2"))
      expect((yield* Effect.flip(sm.versions))._tag).toBe("TransientRegistry")
      expect((yield* sm.versions).map((v) => v.version)).toEqual([1, 2, 3])
    }).pipe(Effect.scoped, Effect.provide(memoryRegistry())))
})

describe("§H10 retention rewrites nothing it keeps", () => {
  it.effect("§H10: retained versions keep their digest and updated_at; the current state is never pruned", () =>
    Effect.gen(function*() {
      const b = yield* backend({ versioning: { enabled: true, maxVersions: 2 } })
      const sm = yield* b.stateManager("default")
      const written = new Map<number, { digest: string; updatedAt: string | undefined }>()
      for (const serial of [1, 2, 3, 4, 5]) {
        yield* TestClock.adjust("1234 millis")
        const put = yield* sm.put(tfState(serial))
        const payload = Option.getOrThrow(yield* sm.get)
        written.set(put.version, { digest: put.digest, updatedAt: payload.updatedAt })
      }
      yield* b.awaitRetention
      const versions = yield* sm.versions
      expect(versions.map((v) => v.version)).toEqual([4, 5])
      for (const v of versions) {
        expect({ digest: v.digest, updatedAt: v.updatedAt }).toEqual(written.get(v.version))
      }
      expect(new Set([...written.values()].map((w) => w.updatedAt)).size).toBe(5)
      // Retention wrote nothing (no detach, no re-tag): the only manifest PUTs are the puts' own.
      const manifestPuts = (yield* requests).filter((r) => r.operation === "putManifest").map((r) => r.reference)
      expect(manifestPuts).toEqual([1, 2, 3, 4, 5].flatMap((v) => ["state-default", `stver-default-v${v}`]))
      expect(Option.getOrThrow(yield* sm.get).digest).toBe(written.get(5)!.digest)
    }).pipe(Effect.scoped, Effect.provide(memoryRegistry())))
})
