import { describe, expect, it } from "@effect/vitest"
import { Effect, Option } from "effect"
import * as Crypto from "node:crypto"
import * as LockInfo from "../../src/LockInfo.js"
import * as MemoryRegistry from "../../src/MemoryRegistry.js"
import { StateBackend } from "../../src/StateBackend.js"
import { backendLayer, clearRequests, httpRequests, repository, str, text, tfState } from "./support.js"

describe("StateManager get/put", () => {
  it.effect("absent state is None; put then get returns the bytes, MD5 and digest", () =>
    Effect.gen(function*() {
      const backend = yield* StateBackend
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
      const backend = yield* StateBackend
      const sm = yield* backend.stateManager("dev")
      const big = text("x".repeat(100_000))
      yield* sm.put(big)
      const control = yield* MemoryRegistry.MemoryRegistryControl
      const tags = yield* control.tags(repository)
      expect(tags.has("state-dev")).toBe(true)
      expect(str(Option.getOrThrow(yield* sm.get).data)).toBe(str(big))
    }).pipe(Effect.provide(backendLayer({ compression: "gzip" }))))

  it.effect("request counts: get = 2, put = 4 after the first", () =>
    Effect.gen(function*() {
      const backend = yield* StateBackend
      const sm = yield* backend.stateManager("default")
      yield* sm.put(tfState(1))
      yield* clearRequests
      yield* sm.get
      expect(yield* httpRequests).toBe(2)
      yield* clearRequests
      yield* sm.put(tfState(2))
      expect(yield* httpRequests).toBeLessThanOrEqual(4)
      const lockId = yield* sm.lock(LockInfo.make({ ID: "lock-1", Who: "me@host" }))
      yield* sm.get
      yield* clearRequests
      yield* sm.put(tfState(3), { lockId })
      expect(yield* httpRequests).toBe(4)
      yield* sm.unlock(lockId)
    }).pipe(Effect.provide(backendLayer())))
})
