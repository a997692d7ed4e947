/**
 * Reading a response body of known size into one buffer, hashing it as it arrives.
 *
 * Why not `response.arrayBuffer` or `response.stream`: the first holds every network chunk and
 * then copies them into a second buffer before the bytes can be hashed (two copies of the blob
 * alive at once, and the hash starts only after the last byte); the second costs a stream step
 * (tens of µs through the platform's and Effect's stream machinery) per network read. On a 1 MiB
 * state those were most of the distance to a raw client, and the extra external memory that
 * survived young collections made V8 run a full mark-compact every few requests.
 *
 * Here each chunk is copied once, into a buffer of the declared size, and hashed while the next one
 * is on the wire. A native response (`layerNode`, see `nativeExchange.ts`) is read from its Node
 * `Readable` in one `Effect.async`; a response of any other `HttpClient` through `response.stream`,
 * a `Chunk` (one network read) at a time. The caller receives the bytes only after their digest
 * and size were checked.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"
import type { Readable } from "node:stream"
import { CorruptState } from "../../Errors.js"
import type { BlobRef } from "../../Registry.js"
import * as Verify from "../verify.js"
import { type BodyFailure, bodyFailure } from "./nativeExchange.js"
import { isNative, type RegistryResponse } from "./transport.js"

// The Node `Readable` of a native response (`layerNode`), when nothing has started reading it.
const nodeReadable = (response: RegistryResponse): Readable | undefined =>
  isNative(response) && response.readable.readableDidRead === false && !response.readable.destroyed
    ? response.readable
    : undefined

/**
 * Read the whole body of `response` as the blob `blob` (verified).
 *
 * @internal
 */
export const readVerifiedBlob = (
  response: RegistryResponse,
  blob: BlobRef
): Effect.Effect<Uint8Array, CorruptState | BodyFailure> =>
  Effect.suspend(() => {
    const sink = Verify.makeVerifiedBuffer(blob)
    const readable = nodeReadable(response)
    if (readable === undefined) {
      return Effect.zipRight(
        Stream.runForEachChunk(response.stream, (chunk) => {
          for (const part of chunk) {
            const tooLarge = sink.push(part)
            if (tooLarge !== undefined) return Effect.fail(tooLarge)
          }
          return Effect.void
        }).pipe(Effect.mapError((error) => (error instanceof CorruptState ? error : bodyFailure(error.cause)))),
        Effect.suspend(sink.finish)
      )
    }
    return Effect.flatMap(readFrom(readable, sink.push), sink.finish)
  })

// Feeds `readable` to `push` until it ends; a `push` failure stops the read (and the connection:
// the rest of an oversized body is not worth draining).
const readFrom = (
  readable: Readable,
  push: (chunk: Uint8Array) => CorruptState | undefined
): Effect.Effect<void, CorruptState | BodyFailure> =>
  Effect.async<void, CorruptState | BodyFailure>((resume) => {
    let done = false
    const finish = (result: Effect.Effect<void, CorruptState | BodyFailure>) => {
      if (done) return
      done = true
      detach()
      resume(result)
    }
    const onData = (chunk: Uint8Array) => {
      const failure = push(chunk)
      if (failure !== undefined) {
        finish(Effect.fail(failure))
        readable.destroy()
      }
    }
    const onEnd = () => finish(Effect.void)
    const onError = (error: unknown) => finish(Effect.fail(bodyFailure(error)))
    // Closed without `end` or `error`: the body was cut off.
    const onClose = () => finish(Effect.fail(bodyFailure(new Error("the response body ended early"))))
    const detach = () => {
      readable.off("data", onData)
      readable.off("end", onEnd)
      readable.off("error", onError)
      readable.off("close", onClose)
    }
    readable.on("data", onData)
    readable.once("end", onEnd)
    readable.once("error", onError)
    readable.once("close", onClose)
    // Interrupted mid-body: stop reading and drop the connection.
    return Effect.sync(() => {
      if (done) return
      done = true
      detach()
      readable.destroy()
    })
  })
