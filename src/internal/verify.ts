/**
 * Content verification shared by every `Registry` implementation: nothing is handed to a caller
 * as success before its digest and size were checked.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"
import * as Digest from "../Digest.js"
import { CorruptState } from "../Errors.js"
import type { BlobRef } from "../Registry.js"

/**
 * Hash and count a blob stream; fail with `CorruptState` on a size or digest mismatch. One chunk is
 * held back until the end so that a consumer never receives the complete (unverified) content
 * before the verdict: a failing stream always fails before its last chunk.
 *
 * @internal
 */
export const verifyBlobStream = (blob: BlobRef) => <E, R>(
  stream: Stream.Stream<Uint8Array, E, R>
): Stream.Stream<Uint8Array, E | CorruptState, R> =>
  Stream.suspend(() => {
    const hasher = Digest.makeHasher()
    let pending: Uint8Array | undefined
    const body = stream.pipe(
      Stream.mapEffect((chunk): Effect.Effect<ReadonlyArray<Uint8Array>, CorruptState> => {
        hasher.update(chunk)
        if (hasher.size() > blob.size) {
          return Effect.fail(
            new CorruptState({
              digest: blob.digest,
              reason: `blob is larger than the ${blob.size} bytes its descriptor declares`
            })
          )
        }
        const out = pending === undefined ? [] : [pending]
        pending = chunk
        return Effect.succeed(out)
      }),
      Stream.flattenIterables
    )
    const tail = Stream.suspend(() => {
      if (hasher.size() !== blob.size) {
        return Stream.fail(
          new CorruptState({
            digest: blob.digest,
            reason: `blob has ${hasher.size()} bytes, its descriptor declares ${blob.size}`
          })
        )
      }
      const actual = hasher.digest()
      if (actual !== blob.digest) {
        return Stream.fail(new CorruptState({ digest: blob.digest, reason: `blob content hashes to ${actual}` }))
      }
      return pending === undefined ? Stream.empty : Stream.make(pending)
    })
    return Stream.concat(body, tail)
  })

/**
 * Check manifest bytes against the digest asked for (a digest reference) and the one the registry
 * reported (`Docker-Content-Digest`), returning the computed digest.
 *
 * @internal
 */
export const verifyManifestBytes = (
  bytes: Uint8Array,
  expected: ReadonlyArray<string | undefined>
): Effect.Effect<Digest.Digest, CorruptState> => {
  const actual = Digest.sha256(bytes)
  for (const digest of expected) {
    // Only sha256 is computed here; a registry reporting another algorithm cannot be checked by us.
    if (digest !== undefined && digest.startsWith("sha256:") && digest !== actual) {
      return Effect.fail(new CorruptState({ digest, reason: `manifest content hashes to ${actual}` }))
    }
  }
  return Effect.succeed(actual)
}
