/**
 * The library as an application wires it: `HttpRegistry.layerNode` (undici), no credentials
 * (plain loopback registry), the rate limiter as `OrasBackend` configures it by default (off),
 * `StateBackend.layer`; run from Promise land through one `ManagedRuntime`.
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as ManagedRuntime from "effect/ManagedRuntime"
import * as Credentials from "../src/Credentials.js"
import * as HttpRegistry from "../src/HttpRegistry.js"
import * as RateLimiter from "../src/RateLimiter.js"
import * as StateBackend from "../src/StateBackend.js"

export interface Client {
  readonly backend: StateBackend.Service
  readonly run: <A, E>(effect: Effect.Effect<A, E, never>) => Promise<A>
  readonly manager: (workspace: string) => Promise<StateBackend.StateManager>
  readonly dispose: () => Promise<void>
}

export const makeClient = async (host: string, options: StateBackend.Options): Promise<Client> => {
  const registry = HttpRegistry.layerNode({ registry: host }).pipe(
    Layer.provide(Credentials.layerNone),
    Layer.provide(RateLimiter.layer({}))
  )
  const runtime = ManagedRuntime.make(StateBackend.layer(options).pipe(Layer.provide(registry)))
  const backend = await runtime.runPromise(StateBackend.StateBackend)
  const run = <A, E>(effect: Effect.Effect<A, E, never>) => runtime.runPromise(effect)
  return {
    backend,
    run,
    manager: (workspace) => run(backend.stateManager(workspace)),
    dispose: () => runtime.dispose()
  }
}
