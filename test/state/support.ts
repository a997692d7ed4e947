import { Effect, Layer } from "effect"
import * as MemoryRegistry from "../../src/MemoryRegistry.js"
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
