import { describe, expect, it } from "@effect/vitest"
import { Context, Deferred, Effect, Exit, Layer, Logger, Option, Ref, Scope } from "effect"
import type * as Digest from "../../src/Digest.js"
import * as MemoryRegistry from "../../src/MemoryRegistry.js"
import { Registry } from "../../src/Registry.js"
import * as StateBackend from "../../src/StateBackend.js"
import { StateBackend as Backend } from "../../src/StateBackend.js"
import { ghotenClient } from "./ghoten.js"
import {
  backendLayer,
  clearRequests,
  httpRequests,
  Instrumentation,
  instrumented,
  memoryRegistry,
  repository,
  requests,
  tagsOf,
  tfState
} from "./support.js"

const versionTags = Effect.map(tagsOf(), (tags) => tags.filter((t) => t.startsWith("stver-") || /^state-.+-v\d+$/.test(t)))

const versionsOf = (tags: ReadonlyArray<string>) => tags.map((t) => Number(/-v(\d+)$/.exec(t)![1])).sort((a, b) => a - b)

const defaultManager = Effect.flatMap(Backend, (b) => b.stateManager("default"))

/** Collect log messages (it.effect removes the default logger). */
const capturingLogs = Effect.gen(function*() {
  const messages = yield* Ref.make<ReadonlyArray<string>>([])
  const logger = Logger.make(({ message }) => {
    const text = Array.isArray(message) ? message.map(String).join(" ") : String(message)
    Effect.runSync(Ref.update(messages, (m) => [...m, text]))
  })
  return { messages, layer: Logger.add(logger) }
})

describe("retention (max_versions = K)", () => {
  it.effect("K=3 after 12 puts: exactly K version tags once awaitRetention returns; the current state is never pruned", () =>
    Effect.gen(function*() {
      const sm = yield* defaultManager
      let last: Digest.Digest | undefined
      for (let serial = 1; serial <= 12; serial++) last = (yield* sm.put(tfState(serial))).digest
      yield* sm.awaitRetention
      expect(yield* versionTags).toEqual(["stver-default-v10", "stver-default-v11", "stver-default-v12"])
      const control = yield* MemoryRegistry.MemoryRegistryControl
      const tags = yield* control.tags(repository)
      expect(tags.get("state-default")).toBe(last)
      expect(tags.get("stver-default-v12")).toBe(last)
      expect((yield* sm.versions).map((v) => [v.version, v.current])).toEqual([[10, false], [11, false], [12, true]])
    }).pipe(Effect.provide(backendLayer({ versioning: { enabled: true, maxVersions: 3 } }))))

  it.effect("K=1 keeps only the current version, awaiting after every put", () =>
    Effect.gen(function*() {
      const sm = yield* defaultManager
      for (let serial = 1; serial <= 5; serial++) {
        yield* sm.put(tfState(serial))
        yield* sm.awaitRetention
        expect(yield* versionTags).toEqual([`stver-default-v${serial}`])
      }
      expect(Option.isSome(yield* sm.get)).toBe(true)
    }).pipe(Effect.provide(backendLayer({ versioning: { enabled: true, maxVersions: 1 } }))))

  it.effect("retention costs O(pruned): after the first scan, one resolve and one DELETE per pruned version, no listing", () =>
    Effect.gen(function*() {
      const sm = yield* defaultManager
      for (let serial = 1; serial <= 4; serial++) yield* sm.put(tfState(serial))
      yield* sm.awaitRetention
      // The first run (at put 4) scanned the tags once.
      for (let serial = 5; serial <= 12; serial++) {
        yield* clearRequests
        yield* sm.put(tfState(serial))
        yield* sm.awaitRetention
        const ops = (yield* requests).map((r) => r.operation)
        expect(ops.filter((o) => o === "listTags")).toEqual([])
        expect(ops.filter((o) => o === "resolveManifest").length).toBe(1)
        expect(ops.filter((o) => o === "deleteManifest").length).toBe(1)
        // put (≤ 5) + retention (2)
        expect(yield* httpRequests).toBeLessThanOrEqual(7)
      }
      expect(versionsOf(yield* versionTags)).toEqual([10, 11, 12])
    }).pipe(Effect.provide(backendLayer({ versioning: { enabled: true, maxVersions: 3 } }))))

  it.effect("a failed DELETE never fails the put and is retried with the next put", () =>
    Effect.gen(function*() {
      const control = yield* MemoryRegistry.MemoryRegistryControl
      const sm = yield* defaultManager
      for (let serial = 1; serial <= 3; serial++) yield* sm.put(tfState(serial))
      yield* sm.awaitRetention
      expect(versionsOf(yield* versionTags)).toEqual([2, 3])
      yield* control.setFaults(MemoryRegistry.failFirst(1, { status: 503 }, (r) => r.operation === "deleteManifest"))
      const put = yield* sm.put(tfState(4))
      expect(put.version).toBe(4)
      yield* sm.awaitRetention
      expect(versionsOf(yield* versionTags)).toEqual([2, 3, 4])
      yield* sm.put(tfState(5))
      yield* sm.awaitRetention
      expect(versionsOf(yield* versionTags)).toEqual([4, 5])
    }).pipe(Effect.provide(backendLayer({ versioning: { enabled: true, maxVersions: 2 } }))))

  it.effect("a failed first tag scan never fails the put and is done again with the next put", () =>
    Effect.gen(function*() {
      const control = yield* MemoryRegistry.MemoryRegistryControl
      const sm = yield* defaultManager
      yield* sm.put(tfState(1))
      yield* sm.put(tfState(2))
      yield* control.setFaults(MemoryRegistry.failFirst(1, { status: 502 }, (r) => r.operation === "listTags"))
      yield* sm.put(tfState(3))
      yield* sm.awaitRetention
      expect(versionsOf(yield* versionTags)).toEqual([1, 2, 3])
      yield* sm.put(tfState(4))
      yield* sm.awaitRetention
      expect(versionsOf(yield* versionTags)).toEqual([3, 4])
    }).pipe(Effect.provide(backendLayer({ versioning: { enabled: true, maxVersions: 2 } }))))

  it.effect("on a registry answering 405, the deleteFallback prunes", () =>
    Effect.gen(function*() {
      const registry = yield* Registry
      const control = yield* MemoryRegistry.MemoryRegistryControl
      const calls: Array<readonly [string, string]> = []
      // Stands in for the GitHub Packages API: deletes the manifest (and with it all its tags).
      const deleteFallback = (tag: string, digest: Digest.Digest) =>
        Effect.gen(function*() {
          calls.push([tag, digest])
          yield* control.setQuirks({})
          const deleted = yield* registry.deleteManifest(repository, digest)
          yield* control.setQuirks({ deleteUnsupported: true })
          return deleted
        })
      const backend = yield* StateBackend.make({ repository, versioning: { enabled: true, maxVersions: 2 }, deleteFallback })
      const sm = yield* backend.stateManager("default")
      const digests: Array<Digest.Digest> = []
      for (let serial = 1; serial <= 5; serial++) digests.push((yield* sm.put(tfState(serial))).digest)
      yield* backend.awaitRetention
      expect(versionsOf(yield* versionTags)).toEqual([4, 5])
      expect([...calls].sort()).toEqual([
        ["stver-default-v1", digests[0]],
        ["stver-default-v2", digests[1]],
        ["stver-default-v3", digests[2]]
      ])
    }).pipe(Effect.scoped, Effect.provide(memoryRegistry({ quirks: { deleteUnsupported: true } }))))

  it.effect("a failing deleteFallback does not stop retention: retried with the next put", () =>
    Effect.gen(function*() {
      const registry = yield* Registry
      const control = yield* MemoryRegistry.MemoryRegistryControl
      let failures = 1
      const deleteFallback = (_tag: string, digest: Digest.Digest) =>
        failures-- > 0
          ? Effect.fail(new Error("GitHub API: 502"))
          : Effect.gen(function*() {
            yield* control.setQuirks({})
            const deleted = yield* registry.deleteManifest(repository, digest)
            yield* control.setQuirks({ deleteUnsupported: true })
            return deleted
          })
      const backend = yield* StateBackend.make({ repository, versioning: { enabled: true, maxVersions: 1 }, deleteFallback })
      const sm = yield* backend.stateManager("default")
      yield* sm.put(tfState(1))
      yield* sm.put(tfState(2))
      yield* backend.awaitRetention
      expect(versionsOf(yield* versionTags)).toEqual([1, 2])
      yield* sm.put(tfState(3))
      yield* backend.awaitRetention
      expect(versionsOf(yield* versionTags)).toEqual([3])
    }).pipe(Effect.scoped, Effect.provide(memoryRegistry({ quirks: { deleteUnsupported: true } }))))

  it.effect("on a registry answering 405 without a fallback, retention logs and stops (puts still succeed)", () =>
    Effect.gen(function*() {
      const logs = yield* capturingLogs
      yield* Effect.gen(function*() {
        const sm = yield* defaultManager
        for (let serial = 1; serial <= 3; serial++) yield* sm.put(tfState(serial))
        yield* sm.awaitRetention
        const deletes = (yield* requests).filter((r) => r.operation === "deleteManifest").length
        expect(deletes).toBe(1)
        yield* clearRequests
        for (let serial = 4; serial <= 6; serial++) expect((yield* sm.put(tfState(serial))).version).toBe(serial)
        yield* sm.awaitRetention
        // Stopped: no more DELETE attempts, no more listing.
        expect((yield* requests).filter((r) => r.operation === "deleteManifest" || r.operation === "listTags")).toEqual([])
        expect(versionsOf(yield* versionTags)).toEqual([1, 2, 3, 4, 5, 6])
      }).pipe(Effect.provide(logs.layer))
      const messages = yield* Ref.get(logs.messages)
      expect(messages.filter((m) => m.includes("retention of default stopped")).length).toBe(1)
    }).pipe(Effect.provide(backendLayer({ versioning: { enabled: true, maxVersions: 1 } }, { quirks: { deleteUnsupported: true } }))))

  it.effect("after a ghoten repository (old-form state-<ws>-v<N> tags), retention prunes both forms down to K", () =>
    Effect.gen(function*() {
      const ghoten = ghotenClient("G3", repository, { versioning: true, gzip: true })
      for (let serial = 1; serial <= 5; serial++) yield* ghoten.put("default", tfState(serial))
      const backend = yield* StateBackend.make({ repository, versioning: { enabled: true, maxVersions: 3 } })
      const sm = yield* backend.stateManager("default")
      expect((yield* sm.put(tfState(6))).version).toBe(6)
      yield* backend.awaitRetention
      expect(yield* versionTags).toEqual(["state-default-v4", "state-default-v5", "stver-default-v6"])
      yield* sm.put(tfState(7))
      yield* sm.put(tfState(8))
      yield* backend.awaitRetention
      expect(yield* versionTags).toEqual(["stver-default-v6", "stver-default-v7", "stver-default-v8"])
    }).pipe(Effect.scoped, Effect.provide(memoryRegistry())))

  it.effect("closing the backend's scope interrupts pending retention; nothing runs afterwards", () =>
    Effect.gen(function*() {
      const instrumentation = yield* Instrumentation
      const control = yield* MemoryRegistry.MemoryRegistryControl
      const scope = yield* Scope.make()
      const context = yield* Layer.buildWithScope(
        StateBackend.layer({ repository, versioning: { enabled: true, maxVersions: 1 } }),
        scope
      )
      const backend = Context.get(context, Backend)
      const sm = yield* backend.stateManager("default")
      yield* sm.put(tfState(1))
      yield* sm.put(tfState(2)) // retention for v2 prunes v1: its DELETE blocks on the gate
      for (let i = 0; i < 100 && (yield* Ref.get(instrumentation.deletesStarted)) === 0; i++) yield* Effect.yieldNow()
      expect(yield* Ref.get(instrumentation.deletesStarted)).toBe(1)
      const waiter = yield* Effect.fork(backend.awaitRetention)
      yield* Scope.close(scope, Exit.void)
      expect(yield* Ref.get(instrumentation.deletesInterrupted)).toBe(1)
      // awaitRetention of a closed backend returns.
      expect(Exit.isSuccess(yield* waiter.await)).toBe(true)
      const requestsAtClose = (yield* control.requests).length
      yield* Deferred.succeed(instrumentation.gate, undefined)
      for (let i = 0; i < 20; i++) yield* Effect.yieldNow()
      expect(yield* Ref.get(instrumentation.deletesCompleted)).toBe(0)
      expect((yield* control.requests).length).toBe(requestsAtClose)
      expect(versionsOf(yield* versionTags)).toEqual([1, 2])
    }).pipe(Effect.provide(instrumented({ blockDeletes: true }).pipe(Layer.provideMerge(memoryRegistry())))))
})
