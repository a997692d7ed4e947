/**
 * The wait of a put between handing its first requests to the registry client and hashing.
 *
 * @internal
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"

/**
 * How a put waits until the requests just handed to the registry client are on the wire, before
 * it starts hashing. undici writes a request on a reused keep-alive connection only from an
 * immediate it queues at dispatch (after checking the idle socket), so the default waits for the
 * check phase after the one in which those immediates run: a single turn could run before them,
 * and the hash would hold them back. Model checks, whose registry answers synchronously under a
 * virtual clock, replace it with a plain yield.
 *
 * @internal
 */
export class RequestsOnTheWire extends Context.Reference<RequestsOnTheWire>()("oras-state/RequestsOnTheWire", {
  defaultValue: (): Effect.Effect<void> =>
    Effect.async<void>((resume) => {
      let handle = setImmediate(() => {
        handle = setImmediate(() => resume(Effect.void))
      })
      return Effect.sync(() => clearImmediate(handle))
    })
}) {}
