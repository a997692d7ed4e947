// The README's library example, compiled and run against an in-memory registry.
import { expect, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { LockInfo, MemoryRegistry, StateBackend } from "../../src/index.js"

const program = Effect.gen(function*() {
  const backend = yield* StateBackend.StateBackend
  const prod = yield* backend.stateManager("prod")
  yield* prod.withLock(LockInfo.make({ Who: "ci@runner", Operation: "OperationTypeApply" }), (lockId) =>
    Effect.gen(function*() {
      yield* prod.get
      yield* prod.put(new TextEncoder().encode("{}"), { lockId })
    }))
  return yield* prod.versions
})

it.effect("README library example", () =>
  Effect.gen(function*() {
    const versions = yield* program
    expect(versions.map((v) => v.version)).toEqual([1])
  }).pipe(Effect.provide(StateBackend.layer({ repository: "acme/infra-state" }).pipe(Layer.provide(MemoryRegistry.layer())))))
