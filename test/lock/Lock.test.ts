import { describe, expect, it } from "@effect/vitest"
import { Duration, Effect, Fiber, Option, TestClock } from "effect"
import * as Digest from "../../src/Digest.js"
import * as LockInfo from "../../src/LockInfo.js"
import * as MemoryRegistry from "../../src/MemoryRegistry.js"
import { MediaType, Registry } from "../../src/Registry.js"
import { StateBackend } from "../../src/StateBackend.js"
import { candidatePrefix } from "../../src/internal/state/lock.js"
import { encodeLock } from "../../src/internal/state/lockManifest.js"
import { validateWorkspace } from "../../src/internal/state/workspace.js"
import { backendLayer, clearRequests, httpRequests, repository, str, tfState } from "../state/support.js"

const info = (ID: string, Who = `${ID}@host`) => LockInfo.make({ ID, Who, Operation: "OperationTypeApply", Version: "1.9.0" })

/** A second "process": its own StateBackend (own holders, own caches) over the same registry. */
const otherProcess = Effect.gen(function*() {
  const { make } = yield* Effect.promise(() => import("../../src/StateBackend.js"))
  return yield* make({ repository, lockTtl: "30 seconds" })
})

describe("lock / unlock", () => {
  it.effect("a second locker gets LockConflict with the holder's LockInfo; unlock then relock works", () =>
    Effect.gen(function*() {
      const backend = yield* StateBackend
      const sm = yield* backend.stateManager("default")
      expect(yield* sm.lock(info("alice"))).toBe("alice")
      const other = yield* (yield* otherProcess).stateManager("default")
      const conflict = yield* Effect.flip(other.lock(info("bob")))
      expect(conflict._tag).toBe("LockConflict")
      if (conflict._tag !== "LockConflict") return
      expect(conflict.info).toMatchObject({ ID: "alice", Who: "alice@host", Operation: "OperationTypeApply", Path: "state-default" })
      const shown = Option.getOrThrow(yield* other.lockInfo)
      expect(shown.info.ID).toBe("alice")
      expect(shown.ours).toBe(true)
      yield* sm.unlock("alice")
      expect(yield* other.lockInfo).toEqual(Option.none())
      expect(yield* other.lock(info("bob"))).toBe("bob")
    }).pipe(Effect.scoped, Effect.provide(backendLayer())))

  it.effect("unlock with a foreign ID fails with LockIdMismatch and keeps the lock", () =>
    Effect.gen(function*() {
      const sm = yield* (yield* StateBackend).stateManager("prod")
      yield* sm.lock(info("alice"))
      const other = yield* (yield* otherProcess).stateManager("prod")
      const mismatch = yield* Effect.flip(other.unlock("mallory"))
      expect(mismatch._tag).toBe("LockIdMismatch")
      const own = yield* Effect.flip(sm.unlock("mallory"))
      expect(own._tag).toBe("LockIdMismatch")
      expect(Option.getOrThrow(yield* other.lockInfo).info.ID).toBe("alice")
      // Another process holding the right ID may release it (Terraform's UNLOCK can land anywhere).
      yield* other.unlock("alice")
      expect(yield* sm.lockInfo).toEqual(Option.none())
      // Releasing a lock that is no longer held is idempotent.
      yield* other.unlock("alice")
    }).pipe(Effect.scoped, Effect.provide(backendLayer())))

  it.effect("force-unlock is explicit and reports whom it removed", () =>
    Effect.gen(function*() {
      const sm = yield* (yield* StateBackend).stateManager("default")
      yield* sm.lock(info("alice"))
      const other = yield* (yield* otherProcess).stateManager("default")
      expect((yield* Effect.flip(other.forceUnlock("someone-else")))._tag).toBe("LockIdMismatch")
      const removed = yield* other.forceUnlock()
      expect(Option.getOrThrow(removed).ID).toBe("alice")
      expect(yield* other.forceUnlock()).toEqual(Option.none())
      // The former holder's write is fenced.
      const lost = yield* Effect.flip(sm.put(tfState(1), { lockId: "alice" }))
      expect(lost._tag).toBe("LockLost")
      expect(yield* sm.get).toEqual(Option.none())
    }).pipe(Effect.scoped, Effect.provide(backendLayer())))

  it.effect("request counts: lock ≤ 4, unlock ≤ 3 (uncontended, after the config blob exists)", () =>
    Effect.gen(function*() {
      const sm = yield* (yield* StateBackend).stateManager("default")
      yield* sm.put(tfState(1))
      yield* clearRequests
      const id = yield* sm.lock(info("alice"))
      const lockRequests = yield* httpRequests
      yield* clearRequests
      yield* sm.unlock(id)
      const unlockRequests = yield* httpRequests
      expect(lockRequests).toBeLessThanOrEqual(4)
      expect(unlockRequests).toBeLessThanOrEqual(3)
      // Released by another process: it has to read the lock first.
      yield* sm.lock(info("bob"))
      const other = yield* (yield* otherProcess).stateManager("default")
      yield* clearRequests
      yield* other.unlock("bob")
      expect(yield* httpRequests).toBeLessThanOrEqual(3)
      console.log(`lock requests: ${lockRequests}, unlock requests: ${unlockRequests} (same process)`)
    }).pipe(Effect.scoped, Effect.provide(backendLayer())))
})

describe("stranded candidates", () => {
  it.effect("a candidate left by a crashed contender (no locked- tag) is reported and reachable by force-unlock", () =>
    Effect.gen(function*() {
      const registry = yield* Registry
      const sm = yield* (yield* StateBackend).stateManager("default")
      yield* registry.putBlob(repository, { digest: Digest.emptyJsonDigest, size: 2 }, new TextEncoder().encode("{}"))
      const stranded = encodeLock({
        workspace: "default",
        info: info("crashed-contender"),
        candidate: `${candidatePrefix(yield* validateWorkspace("default"))}00000000deadbeef`,
        expiresAt: undefined,
        now: 0
      })
      yield* registry.putManifest(repository, `${candidatePrefix(yield* validateWorkspace("default"))}00000000deadbeef`, {
        mediaType: MediaType.ociManifest,
        bytes: stranded
      })
      const conflict = yield* Effect.flip(sm.lock(info("alice")).pipe(Effect.fork, Effect.tap(() => TestClock.adjust("1 minute")), Effect.flatMap(Fiber.join)))
      expect(conflict._tag === "LockConflict" && conflict.info.ID).toBe("crashed-contender")
      expect((yield* Effect.flip(sm.forceUnlock("someone-else")))._tag).toBe("LockIdMismatch")
      const removed = yield* sm.forceUnlock("crashed-contender")
      expect(Option.getOrThrow(removed).ID).toBe("crashed-contender")
      expect(yield* sm.lock(info("alice"))).toBe("alice")
    }).pipe(Effect.scoped, Effect.provide(backendLayer())))
})

describe("leases (TestClock)", () => {
  it.effect("a lock expires only after its TTL; then another process acquires it", () =>
    Effect.gen(function*() {
      const sm = yield* (yield* StateBackend).stateManager("default")
      yield* sm.lock(info("alice"))
      const other = yield* (yield* otherProcess).stateManager("default")
      yield* TestClock.adjust("29 seconds")
      expect((yield* Effect.flip(other.lock(info("bob"))))._tag).toBe("LockConflict")
      yield* TestClock.adjust("2 seconds")
      expect(yield* other.lock(info("bob"))).toBe("bob")
    }).pipe(Effect.scoped, Effect.provide(backendLayer({ lockTtl: "30 seconds" }))))

  it.effect("withLock renews the lease: a long critical section stays exclusive, then is released", () =>
    Effect.gen(function*() {
      const sm = yield* (yield* StateBackend).stateManager("default")
      const other = yield* (yield* otherProcess).stateManager("default")
      const work = yield* sm.withLock(info("alice"), (lockId) =>
        Effect.gen(function*() {
          yield* Effect.sleep("100 seconds")
          return yield* sm.put(tfState(7), { lockId })
        })).pipe(Effect.fork)
      for (let t = 0; t < 9; t++) {
        yield* TestClock.adjust("10 seconds")
        const attempt = yield* Effect.either(other.lock(info("bob")))
        expect(attempt._tag).toBe("Left")
      }
      yield* TestClock.adjust("20 seconds")
      const put = yield* Fiber.join(work)
      expect(put.version).toBe(1)
      expect(yield* sm.lockInfo).toEqual(Option.none())
      expect(yield* other.lock(info("bob"))).toBe("bob")
    }).pipe(Effect.scoped, Effect.provide(backendLayer({ lockTtl: "30 seconds" }))))

  it.effect("withLock releases on failure and on interruption", () =>
    Effect.gen(function*() {
      const sm = yield* (yield* StateBackend).stateManager("default")
      const failed = yield* Effect.either(sm.withLock(info("alice"), () => Effect.fail("boom" as const)))
      expect(failed._tag).toBe("Left")
      expect(yield* sm.lockInfo).toEqual(Option.none())
      const fiber = yield* sm.withLock(info("alice"), () => Effect.never).pipe(Effect.fork)
      yield* TestClock.adjust("1 second")
      expect(Option.getOrThrow(yield* sm.lockInfo).info.ID).toBe("alice")
      yield* Fiber.interrupt(fiber)
      expect(yield* sm.lockInfo).toEqual(Option.none())
    }).pipe(Effect.scoped, Effect.provide(backendLayer({ lockTtl: "30 seconds" }))))

  it.effect("takeover after missed renewals; the old holder's put is fenced and does not land", () =>
    Effect.gen(function*() {
      const sm = yield* (yield* StateBackend).stateManager("default")
      yield* sm.put(tfState(1))
      yield* sm.lock(info("alice")) // no renewal: lock() alone does not renew
      yield* TestClock.adjust("31 seconds")
      const other = yield* (yield* otherProcess).stateManager("default")
      yield* other.lock(info("bob"))
      yield* other.put(tfState(2), { lockId: "bob" })
      const lost = yield* Effect.flip(sm.put(tfState(99), { lockId: "alice" }))
      expect(lost._tag).toBe("LockLost")
      expect(str(Option.getOrThrow(yield* sm.get).data)).toBe(str(tfState(2)))
      // A lease about to run out is fenced locally (the clock-skew margin), before any request.
      yield* other.unlock("bob")
      yield* sm.lock(info("carol"))
      yield* TestClock.adjust("28 seconds")
      expect((yield* Effect.flip(sm.put(tfState(3), { lockId: "carol" })))._tag).toBe("LockLost")
    }).pipe(Effect.scoped, Effect.provide(backendLayer({ lockTtl: "30 seconds" }))))
})

describe("eventually consistent tag listing", () => {
  it.effect("a listing that does not yet show our own candidate proves nothing: no double acquisition", () =>
    Effect.gen(function*() {
      const control = yield* MemoryRegistry.MemoryRegistryControl
      const sm = yield* (yield* StateBackend).stateManager("default")
      const other = yield* (yield* otherProcess).stateManager("default")
      const first = yield* Effect.fork(sm.lock(info("alice")))
      for (let i = 0; i < 40; i++) yield* TestClock.adjust("500 millis")
      expect(yield* Fiber.join(first)).toBe("alice")
      const second = yield* Effect.fork(Effect.either(other.lock(info("bob"))))
      for (let i = 0; i < 40; i++) yield* TestClock.adjust("500 millis")
      const result = yield* Fiber.join(second)
      expect(result._tag === "Left" && result.left._tag).toBe("LockConflict")
      // A lag longer than the patience of lock(): an InconsistentRead, never a false success.
      const third = yield* (yield* otherProcess).stateManager("slow")
      yield* control.setQuirks({ tagListingLag: "60 seconds" })
      const slow = yield* Effect.fork(Effect.either(third.lock(info("carol"))))
      for (let i = 0; i < 60; i++) yield* TestClock.adjust("500 millis")
      const outcome = yield* Fiber.join(slow)
      expect(outcome._tag === "Left" && outcome.left._tag).toBe("InconsistentRead")
    }).pipe(Effect.scoped, Effect.provide(backendLayer({}, { quirks: { tagListingLag: "500 millis" } }))))
})

describe("registries without DELETE (405)", () => {
  it.effect("release re-points the lock to the unlocked- marker; relocking works; state reads fine", () =>
    Effect.gen(function*() {
      const sm = yield* (yield* StateBackend).stateManager("default")
      const id = yield* sm.lock(info("alice"))
      yield* sm.put(tfState(1), { lockId: id })
      yield* sm.unlock(id)
      expect(yield* sm.lockInfo).toEqual(Option.none())
      const control = yield* MemoryRegistry.MemoryRegistryControl
      const tags = yield* control.tags(repository)
      expect(tags.get("locked-default")).toBe(tags.get("unlocked-default"))
      yield* sm.lock(info("bob"))
      expect(Option.getOrThrow(yield* sm.lockInfo).info.ID).toBe("bob")
      const other = yield* (yield* otherProcess).stateManager("default")
      expect((yield* Effect.flip(other.lock(info("carol"))))._tag).toBe("LockConflict")
    }).pipe(Effect.scoped, Effect.provide(backendLayer({}, { quirks: { deleteUnsupported: true } }))))
})

describe("ghoten compatibility", () => {
  it.effect("a ghoten-written locked-<ws> (G3) is respected and reported", () =>
    Effect.gen(function*() {
      const registry = yield* Registry
      const sm = yield* (yield* StateBackend).stateManager("default")
      yield* registry.putBlob(repository, { digest: Digest.emptyJsonDigest, size: 2 }, new TextEncoder().encode("{}"))
      const empty = { mediaType: MediaType.ociEmpty, digest: Digest.emptyJsonDigest, size: 2, data: "e30=" }
      const ghotenInfo = { ID: "6f1c0e1e-ghoten", Operation: "OperationTypePlan", Info: "", Who: "ci@runner", Version: "1.11.2", Created: "2026-01-10T12:00:00.123456789Z", Path: "state-default" }
      const manifest = JSON.stringify({
        schemaVersion: 2, mediaType: MediaType.ociManifest, artifactType: "application/vnd.terraform.lock.v1",
        config: empty, layers: [empty],
        annotations: {
          "org.opencontainers.image.created": "2026-01-10T12:00:00Z",
          "org.terraform.lock.generation": "{\"generation\":1,\"holder_id\":\"6f1c0e1e-ghoten\"}",
          "org.terraform.lock.id": ghotenInfo.ID,
          "org.terraform.lock.info": JSON.stringify(ghotenInfo),
          "org.terraform.workspace": "default"
        }
      })
      yield* registry.putManifest(repository, "locked-default", { mediaType: MediaType.ociManifest, bytes: new TextEncoder().encode(manifest) })
      const conflict = yield* Effect.flip(sm.lock(info("alice")))
      expect(conflict._tag).toBe("LockConflict")
      if (conflict._tag === "LockConflict") expect(conflict.info).toEqual(ghotenInfo)
      const shown = Option.getOrThrow(yield* sm.lockInfo)
      expect(shown.ours).toBe(false)
      expect(shown.info.Who).toBe("ci@runner")
      // No candidate of ours is left behind by the failed attempt.
      const control = yield* MemoryRegistry.MemoryRegistryControl
      expect([...(yield* control.tags(repository)).keys()].filter((t) => t.startsWith("lockc-"))).toEqual([])
    }).pipe(Effect.scoped, Effect.provide(backendLayer())))

  it.effect("what we hold is visible to ghoten readers at locked-<ws>", () =>
    Effect.gen(function*() {
      const registry = yield* Registry
      const sm = yield* (yield* StateBackend).stateManager("default")
      yield* sm.lock(info("alice"))
      const m = Option.getOrThrow(yield* registry.getManifest(repository, "locked-default"))
      const json = JSON.parse(new TextDecoder().decode(m.bytes))
      expect(json.artifactType).toBe("application/vnd.terraform.lock.v1")
      expect(json.annotations["org.terraform.lock.id"]).toBe("alice")
      expect(Object.keys(JSON.parse(json.annotations["org.terraform.lock.info"]))).toEqual(["ID", "Operation", "Info", "Who", "Version", "Created", "Path"])
      expect(JSON.parse(json.annotations["org.terraform.lock.info"]).Path).toBe("state-default")
      expect(json.annotations["org.terraform.workspace"]).toBe("default")
      void Duration
    }).pipe(Effect.scoped, Effect.provide(backendLayer())))
})
