import { Context, Deferred, Effect, Layer, Ref, Stream } from "effect"
import * as MemoryRegistry from "../../src/MemoryRegistry.js"
import { Registry, type Service as RegistryService } from "../../src/Registry.js"
import * as StateBackend from "../../src/StateBackend.js"

export const repository = "team/infra-state"

export const backendLayer = (
  options: Partial<StateBackend.Options> = {},
  memory: MemoryRegistry.Options = {}
) => {
  const registry = MemoryRegistry.layer(memory)
  return Layer.merge(
    StateBackend.layer({ repository, ...options }).pipe(Layer.provide(registry)),
    registry
  )
}

export const text = (s: string) => new TextEncoder().encode(s)
export const str = (b: Uint8Array) => new TextDecoder().decode(b)

/** HTTP requests a real registry would have seen, since the last clear. */
export const httpRequests = Effect.gen(function*() {
  const control = yield* MemoryRegistry.MemoryRegistryControl
  const requests = yield* control.requests
  return requests.reduce((n, r) => n + r.httpRequests, 0)
})

export const clearRequests = Effect.flatMap(MemoryRegistry.MemoryRegistryControl, (c) => c.clearRequests)

export const tfState = (serial: number, outputs: Record<string, unknown> = {}) =>
  text(JSON.stringify({
    version: 4,
    terraform_version: "1.9.0",
    serial,
    lineage: "3f0c1b7e-0000-4000-8000-000000000000",
    outputs: Object.fromEntries(Object.entries(outputs).map(([k, v]) => [k, { value: v, type: "string" }])),
    resources: []
  }))

/** Requests recorded by the MemoryRegistry since the last clear. */
export const requests = Effect.flatMap(MemoryRegistry.MemoryRegistryControl, (c) => c.requests)

/** Current tags of the repository (no listing lag), sorted. */
export const tagsOf = (repo: string = repository) =>
  Effect.flatMap(MemoryRegistry.MemoryRegistryControl, (c) => Effect.map(c.tags(repo), (m) => [...m.keys()].sort()))

/** A MemoryRegistry plus its control, for tests that build backends themselves (`StateBackend.make`). */
export const memoryRegistry = (memory: MemoryRegistry.Options = {}) => MemoryRegistry.layer(memory)

/**
 * Wrap the `Registry` in context: `deleteManifest` calls matching `blockDeletes` wait on a gate
 * that the test opens (or never opens), recording when they start and whether they were
 * interrupted; `getBlob` streams count the chunks they emit.
 */
export interface Instrumented {
  readonly deletesStarted: Ref.Ref<number>
  readonly deletesInterrupted: Ref.Ref<number>
  readonly deletesCompleted: Ref.Ref<number>
  readonly blobChunks: Ref.Ref<number>
  readonly gate: Deferred.Deferred<void>
}

export class Instrumentation extends Context.Tag("test/Instrumentation")<Instrumentation, Instrumented>() {}

export const instrumented = (options: { readonly blockDeletes?: boolean } = {}) =>
  Layer.effectContext(Effect.gen(function*() {
    const inner = yield* Registry
    const deletesStarted = yield* Ref.make(0)
    const deletesInterrupted = yield* Ref.make(0)
    const deletesCompleted = yield* Ref.make(0)
    const blobChunks = yield* Ref.make(0)
    const gate = yield* Deferred.make<void>()
    const service: RegistryService = {
      ...inner,
      deleteManifest: (repo, reference) =>
        Effect.gen(function*() {
          yield* Ref.update(deletesStarted, (n) => n + 1)
          if (options.blockDeletes === true) yield* Deferred.await(gate)
          const result = yield* inner.deleteManifest(repo, reference)
          yield* Ref.update(deletesCompleted, (n) => n + 1)
          return result
        }).pipe(Effect.onInterrupt(() => Ref.update(deletesInterrupted, (n) => n + 1))),
      // One chunk per pull, so that the count says how far a consumer read.
      getBlob: (repo, blob) =>
        inner.getBlob(repo, blob).pipe(Stream.rechunk(1), Stream.tap(() => Ref.update(blobChunks, (n) => n + 1)))
    }
    return Context.make(Registry, service).pipe(
      Context.add(Instrumentation, { deletesStarted, deletesInterrupted, deletesCompleted, blobChunks, gate })
    )
  }))
