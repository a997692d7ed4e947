import { describe, expect, it } from "@effect/vitest"
import { Chunk, Effect, Fiber, Option, Stream, TestClock } from "effect"
import * as Crypto from "node:crypto"
import * as Digest from "../../src/Digest.js"
import * as LockInfo from "../../src/LockInfo.js"
import * as MemoryRegistry from "../../src/MemoryRegistry.js"
import { Registry } from "../../src/Registry.js"
import * as StateBackend from "../../src/StateBackend.js"
import { StateBackend as Backend } from "../../src/StateBackend.js"
import * as WireFormat from "../../src/WireFormat.js"
import { gzipBomb, pushStateManifest, stateSuite } from "./stateSuite.js"
import {
  backendLayer,
  clearRequests,
  httpRequests,
  memoryRegistry,
  repository,
  requests,
  str,
  tagsOf,
  text,
  tfState
} from "./support.js"

let counter = 0
const uniqueRepository = (name: string) => `mem/${name}-${++counter}`

describe("state suite on MemoryRegistry", () => {
  stateSuite({ clock: "effect", registry: () => memoryRegistry(), repository: uniqueRepository })
})

describe("state suite on MemoryRegistry with distribution 2.8 quirks (no tag delete, unpaged listing)", () => {
  stateSuite({
    clock: "effect",
    registry: () => memoryRegistry({ quirks: { tagDeleteUnsupported: true, ignoresTagPageSize: true }, defaultTagPageSize: 2 }),
    repository: uniqueRepository
  })
})

describe("state suite on MemoryRegistry with small tag pages", () => {
  stateSuite({ clock: "effect", registry: () => memoryRegistry({ defaultTagPageSize: 2 }), repository: uniqueRepository })
})

describe("StateManager get/put", () => {
  it.effect("absent state is None; put then get returns the bytes, MD5 and digest", () =>
    Effect.gen(function*() {
      const backend = yield* Backend
      const sm = yield* backend.stateManager("default")
      expect(yield* sm.get).toEqual(Option.none())
      const put = yield* sm.put(tfState(1))
      expect(put.version).toBe(1)
      const got = Option.getOrThrow(yield* sm.get)
      expect(str(got.data)).toBe(str(tfState(1)))
      expect(got.digest).toBe(put.digest)
      expect(got.version).toBe(1)
      expect(Buffer.from(got.md5).toString("hex")).toBe(Crypto.createHash("md5").update(tfState(1)).digest("hex"))
    }).pipe(Effect.provide(backendLayer())))

  it.effect("gzip round trip", () =>
    Effect.gen(function*() {
      const backend = yield* Backend
      const sm = yield* backend.stateManager("dev")
      const big = text("x".repeat(100_000))
      yield* sm.put(big)
      const control = yield* MemoryRegistry.MemoryRegistryControl
      const tags = yield* control.tags(repository)
      expect(tags.has("state-dev")).toBe(true)
      expect(str(Option.getOrThrow(yield* sm.get).data)).toBe(str(big))
    }).pipe(Effect.provide(backendLayer({ compression: "gzip" }))))
})

describe("request counts", () => {
  it.effect("get = 2 (manifest GET by tag + blob GET)", () =>
    Effect.gen(function*() {
      const sm = yield* Effect.flatMap(Backend, (b) => b.stateManager("default"))
      yield* sm.put(tfState(1))
      yield* clearRequests
      yield* sm.get
      expect(yield* httpRequests).toBe(2)
      expect((yield* requests).map((r) => r.operation)).toEqual(["getManifest", "getBlob"])
    }).pipe(Effect.provide(backendLayer())))

  it.effect("put without versioning ≤ 4 once the config blob exists; the first put adds only the config check", () =>
    Effect.gen(function*() {
      const sm = yield* Effect.flatMap(Backend, (b) => b.stateManager("default"))
      yield* sm.put(tfState(1))
      expect(yield* httpRequests).toBeLessThanOrEqual(4 + 3)
      yield* clearRequests
      yield* sm.put(tfState(2))
      expect(yield* httpRequests).toBeLessThanOrEqual(4)
      expect((yield* requests).map((r) => r.operation)).toEqual(["getManifest", "putBlob", "putManifest"])
    }).pipe(Effect.provide(backendLayer())))

  it.effect("put with versioning ≤ 5", () =>
    Effect.gen(function*() {
      const sm = yield* Effect.flatMap(Backend, (b) => b.stateManager("default"))
      yield* sm.put(tfState(1))
      yield* clearRequests
      yield* sm.put(tfState(2))
      expect(yield* httpRequests).toBeLessThanOrEqual(5)
      expect((yield* requests).filter((r) => r.operation === "putManifest").map((r) => r.reference)).toEqual([
        "state-default",
        "stver-default-v2"
      ])
    }).pipe(Effect.provide(backendLayer({ versioning: { enabled: true, maxVersions: 0 } }))))

  it.effect("put under a lock ≤ 4 (lock, get, put with the lock ID)", () =>
    Effect.gen(function*() {
      const sm = yield* Effect.flatMap(Backend, (b) => b.stateManager("default"))
      yield* sm.put(tfState(1))
      const lockId = yield* sm.lock(LockInfo.make({ ID: "x" }))
      expect(lockId).toBe("x")
      yield* sm.get
      yield* clearRequests
      yield* sm.put(tfState(2), { lockId })
      expect(yield* httpRequests).toBeLessThanOrEqual(4)
      yield* sm.unlock(lockId)
      expect(str(Option.getOrThrow(yield* sm.get).data)).toBe(str(tfState(2)))
    }).pipe(Effect.provide(backendLayer())))

  it.effect("put under a lock with versioning ≤ 5", () =>
    Effect.gen(function*() {
      const sm = yield* Effect.flatMap(Backend, (b) => b.stateManager("default"))
      yield* sm.put(tfState(1))
      const lockId = yield* sm.lock(LockInfo.make({ ID: "x" }))
      yield* sm.get
      yield* clearRequests
      const put = yield* sm.put(tfState(2), { lockId })
      expect(put.version).toBe(2)
      expect(yield* httpRequests).toBeLessThanOrEqual(5)
    }).pipe(Effect.provide(backendLayer({ versioning: { enabled: true } }))))

  it.effect("an over-size put is refused before any request", () =>
    Effect.gen(function*() {
      const sm = yield* Effect.flatMap(Backend, (b) => b.stateManager("default"))
      yield* clearRequests
      const error = yield* Effect.flip(sm.put(text("x".repeat(1025))))
      expect(error._tag).toBe("StateTooLarge")
      expect(error._tag === "StateTooLarge" && error.size).toBe(1025)
      expect(yield* requests).toEqual([])
    }).pipe(Effect.provide(backendLayer({ maxStateSize: 1024 }))))
})

describe("reads are verified and bounded", () => {
  for (const compression of ["none", "gzip"] as const) {
    it.effect(`a layer whose bytes do not match its digest is CorruptState (${compression})`, () =>
      Effect.gen(function*() {
        const control = yield* MemoryRegistry.MemoryRegistryControl
        const sm = yield* Effect.flatMap(Backend, (b) => b.stateManager("default"))
        yield* sm.put(tfState(1, { a: "b" }))
        const layer = yield* layerOf("state-default")
        const original = yield* blobOf(layer)
        const tampered = original.slice()
        tampered[tampered.length - 1] = tampered[tampered.length - 1]! ^ 0xff
        yield* control.corruptBlob(repository, layer.digest, tampered)
        const error = yield* Effect.flip(sm.get)
        expect(error._tag).toBe("CorruptState")
        expect(error.message).toContain("hashes to")
      }).pipe(Effect.provide(backendLayer({ compression }))))

    it.effect(`a layer whose size differs from its descriptor is CorruptState (${compression})`, () =>
      Effect.gen(function*() {
        const control = yield* MemoryRegistry.MemoryRegistryControl
        const sm = yield* Effect.flatMap(Backend, (b) => b.stateManager("default"))
        yield* sm.put(tfState(1, { a: "b" }))
        const layer = yield* layerOf("state-default")
        const original = yield* blobOf(layer)
        yield* control.corruptBlob(repository, layer.digest, original.slice(0, original.length - 3))
        const error = yield* Effect.flip(sm.get)
        expect(error._tag).toBe("CorruptState")
        expect(error.message).toMatch(/bytes/)
      }).pipe(Effect.provide(backendLayer({ compression }))))
  }

  it.effect("a transient failure while downloading a gzip layer stays TransientRegistry (not 'bad gzip')", () =>
    Effect.gen(function*() {
      const control = yield* MemoryRegistry.MemoryRegistryControl
      const sm = yield* Effect.flatMap(Backend, (b) => b.stateManager("default"))
      yield* sm.put(tfState(1))
      yield* control.setFaults(MemoryRegistry.failFirst(1, { status: 503 }, (r) => r.operation === "getBlob"))
      const error = yield* Effect.flip(sm.get)
      expect(error._tag).toBe("TransientRegistry")
      expect(str(Option.getOrThrow(yield* sm.get).data)).toBe(str(tfState(1)))
    }).pipe(Effect.provide(backendLayer({ compression: "gzip" }))))

  it.effect("a gzip bomb (2 MiB → 2 GiB) stops at the limit without allocating the decompressed size", () =>
    Effect.gen(function*() {
      yield* pushStateManifest(repository, "state-default", {
        data: gzipBomb(2048),
        workspace: "default",
        layerMediaType: WireFormat.LayerMediaType.stateGzip
      })
      const backend = yield* StateBackend.make({ repository, maxStateSize: 4 << 20 })
      const sm = yield* backend.stateManager("default")
      const before = process.memoryUsage().arrayBuffers
      const error = yield* Effect.flip(sm.get)
      expect(error._tag).toBe("StateTooLarge")
      // Decoding all of it would allocate 2 GiB; it stops after ~4 MiB.
      expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(256 << 20)
    }).pipe(Effect.scoped, Effect.provide(memoryRegistry())))

  it.effect("a gzip layer too big to hold a state within the limit is refused before download", () =>
    Effect.gen(function*() {
      yield* pushStateManifest(repository, "state-default", {
        data: gzipBomb(4096), // 4.3 MB compressed
        workspace: "default",
        layerMediaType: WireFormat.LayerMediaType.stateGzip
      })
      // So is a state whose recorded (our annotation) decoded size is over the limit.
      const writer = yield* StateBackend.make({ repository, compression: "gzip" })
      yield* Effect.flatMap(writer.stateManager("recorded"), (sm) => sm.put(text("a".repeat(5000))))
      const backend = yield* StateBackend.make({ repository, maxStateSize: 4 << 20 })
      const small = yield* StateBackend.make({ repository, maxStateSize: 4999 })
      yield* clearRequests
      expect((yield* Effect.flip(Effect.flatMap(backend.stateManager("default"), (sm) => sm.get)))._tag).toBe("StateTooLarge")
      expect((yield* Effect.flip(Effect.flatMap(small.stateManager("recorded"), (sm) => sm.get)))._tag).toBe("StateTooLarge")
      expect((yield* requests).filter((r) => r.operation === "getBlob")).toEqual([])
    }).pipe(Effect.scoped, Effect.provide(memoryRegistry())))
})

describe("a state-tag PUT whose outcome is unknown is observed, never re-sent", () => {
  const stateTagPut = (r: MemoryRegistry.RequestRecord) => r.operation === "putManifest" && r.reference === "state-default"

  it.effect("response lost after the PUT landed: the put succeeds with exactly one state-tag PUT", () =>
    Effect.gen(function*() {
      const control = yield* MemoryRegistry.MemoryRegistryControl
      const sm = yield* Effect.flatMap(Backend, (b) => b.stateManager("default"))
      yield* sm.put(tfState(1))
      yield* clearRequests
      yield* control.setFaults(MemoryRegistry.failFirst(1, { status: 503, responseLost: true }, stateTagPut))
      const put = yield* sm.put(tfState(2))
      expect(put.version).toBe(2)
      expect((yield* requests).filter(stateTagPut).length).toBe(1)
      const got = Option.getOrThrow(yield* sm.get)
      expect(got.digest).toBe(put.digest)
      expect(str(got.data)).toBe(str(tfState(2)))
      // The version tag was written once too.
      expect((yield* tagsOf()).filter((t) => t.startsWith("stver-"))).toEqual(["stver-default-v1", "stver-default-v2"])
    }).pipe(Effect.provide(backendLayer({ versioning: { enabled: true } }))))

  it.effect("the PUT really failed: the put fails with TransientRegistry and the old state is intact", () =>
    Effect.gen(function*() {
      const control = yield* MemoryRegistry.MemoryRegistryControl
      const sm = yield* Effect.flatMap(Backend, (b) => b.stateManager("default"))
      const first = yield* sm.put(tfState(1))
      yield* clearRequests
      yield* control.setFaults(MemoryRegistry.failFirst(1, { status: 503 }, stateTagPut))
      const error = yield* Effect.flip(sm.put(tfState(2)))
      expect(error._tag).toBe("TransientRegistry")
      expect((yield* requests).filter(stateTagPut).length).toBe(1)
      const got = Option.getOrThrow(yield* sm.get)
      expect(got.digest).toBe(first.digest)
      expect(str(got.data)).toBe(str(tfState(1)))
      expect((yield* tagsOf()).filter((t) => t.startsWith("stver-"))).toEqual(["stver-default-v1"])
    }).pipe(Effect.provide(backendLayer({ versioning: { enabled: true } }))))

  it.effect("a version-tag PUT that fails after the state landed reports versionTagged: false", () =>
    Effect.gen(function*() {
      const control = yield* MemoryRegistry.MemoryRegistryControl
      const sm = yield* Effect.flatMap(Backend, (b) => b.stateManager("default"))
      yield* sm.put(tfState(1))
      yield* control.setFaults(MemoryRegistry.failFirst(1, { status: 503 }, (r) => r.operation === "putManifest" && r.reference === "stver-default-v2"))
      const put = yield* sm.put(tfState(2))
      expect(put.versionTagged).toBe(false)
      expect(str(Option.getOrThrow(yield* sm.get).data)).toBe(str(tfState(2)))
      expect((yield* sm.put(tfState(3))).version).toBe(3)
    }).pipe(Effect.provide(backendLayer({ versioning: { enabled: true } }))))
})

const layerOf = (tag: string) =>
  Effect.gen(function*() {
    const registry = yield* Registry
    const manifest = Option.getOrThrow(yield* registry.getManifest(repository, tag))
    const json = JSON.parse(str(manifest.bytes)) as { layers: Array<{ digest: Digest.Digest; size: number }> }
    return json.layers[0]!
  })

const blobOf = (blob: { readonly digest: Digest.Digest; readonly size: number }) =>
  Effect.flatMap(Registry, (registry) =>
    Effect.map(Stream.runCollect(registry.getBlob(repository, blob)), (chunks) => new Uint8Array(Buffer.concat(Chunk.toArray(chunks)))))

describe("withLock", () => {
  it.effect("a transient failure while renewing the lease is retried; the work completes under the lock", () =>
    Effect.gen(function*() {
      const control = yield* MemoryRegistry.MemoryRegistryControl
      const sm = yield* Effect.flatMap(Backend, (b) => b.stateManager("default"))
      const renewals = (r: MemoryRegistry.RequestRecord) => r.operation === "putManifest" && r.reference?.startsWith("lockc-") === true
      const fiber = yield* Effect.fork(sm.withLock(LockInfo.make({ ID: "long-apply" }), (lockId) =>
        Effect.gen(function*() {
          yield* control.setFaults(MemoryRegistry.failFirst(1, { status: 503 }, renewals))
          yield* Effect.sleep("90 seconds")
          return yield* sm.put(tfState(1), { lockId })
        })))
      yield* TestClock.adjust("100 seconds")
      const put = yield* Fiber.join(fiber)
      expect(put.version).toBe(1)
      expect(yield* sm.lockInfo).toEqual(Option.none())
      expect((yield* requests).filter(renewals).length).toBeGreaterThan(5)
    }).pipe(Effect.provide(backendLayer({ lockTtl: "30 seconds" }))))
})
