/**
 * Content verification shared by every `Registry` implementation: nothing is handed to a caller
 * as success before its digest and size were checked.
 *
 * @internal
 */
import * as Chunk from "effect/Chunk"
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
 * Works a whole `Chunk` of buffers at a time (one step per network read, not one effect and one
 * inner stream per buffer): on a 64 MiB download that is ~1,000 cheap steps instead of ~1,000
 * `mapEffect` + `flattenIterables` rounds, which cost more CPU than the hashing itself.
 *
 * @internal
 */
export const verifyBlobStream = (blob: BlobRef) => <E, R>(
  stream: Stream.Stream<Uint8Array, E, R>
): Stream.Stream<Uint8Array, E | CorruptState, R> =>
  Stream.suspend(() => {
    const hasher = Digest.makeHasher()
    let pending: Uint8Array | undefined
    const body = Stream.mapChunksEffect(stream, (chunk): Effect.Effect<Chunk.Chunk<Uint8Array>, CorruptState> => {
      if (Chunk.isEmpty(chunk)) return Effect.succeed(chunk)
      const out: Array<Uint8Array> = []
      for (const part of chunk) {
        hasher.update(part)
        if (pending !== undefined) out.push(pending)
        pending = part
      }
      if (hasher.size() > blob.size) return Effect.fail(largerThanDeclared(blob))
      return Effect.succeed(Chunk.unsafeFromArray(out))
    })
    const tail = Stream.suspend(() => {
      if (hasher.size() !== blob.size) return Stream.fail(sizeMismatch(blob, hasher.size()))
      const actual = hasher.digest()
      if (actual !== blob.digest) return Stream.fail(digestMismatch(blob, actual))
      return pending === undefined ? Stream.empty : Stream.make(pending)
    })
    return Stream.concat(body, tail)
  })

/**
 * Check a whole blob against its descriptor (size, then sha256).
 *
 * @internal
 */
export const verifyBlobBytes = (bytes: Uint8Array, blob: BlobRef): Effect.Effect<Uint8Array, CorruptState> => {
  if (bytes.byteLength !== blob.size) return Effect.fail(sizeMismatch(blob, bytes.byteLength))
  const actual = Digest.sha256(bytes)
  return actual === blob.digest ? Effect.succeed(bytes) : Effect.fail(digestMismatch(blob, actual))
}

/**
 * A blob gathered into one buffer of its declared size as its chunks arrive, each hashed on
 * arrival: `push` refuses (`CorruptState`) a chunk that would take it past the declared size,
 * `finish` returns the bytes only when size and digest match.
 *
 * @internal
 */
export const makeVerifiedBuffer = (blob: BlobRef): {
  readonly push: (chunk: Uint8Array) => CorruptState | undefined
  readonly finish: () => Effect.Effect<Uint8Array, CorruptState>
} => {
  const out = Buffer.allocUnsafe(blob.size)
  const hasher = Digest.makeHasher()
  let offset = 0
  return {
    push: (chunk) => {
      if (offset + chunk.byteLength > blob.size) return largerThanDeclared(blob)
      out.set(chunk, offset)
      offset += chunk.byteLength
      hasher.update(chunk)
      return undefined
    },
    finish: () => {
      if (offset !== blob.size) return Effect.fail(sizeMismatch(blob, offset))
      const actual = hasher.digest()
      return actual === blob.digest
        ? Effect.succeed(new Uint8Array(out.buffer, out.byteOffset, out.byteLength))
        : Effect.fail(digestMismatch(blob, actual))
    }
  }
}

const largerThanDeclared = (blob: BlobRef) =>
  new CorruptState({ digest: blob.digest, reason: `blob is larger than the ${blob.size} bytes its descriptor declares` })

const sizeMismatch = (blob: BlobRef, size: number) =>
  new CorruptState({ digest: blob.digest, reason: `blob has ${size} bytes, its descriptor declares ${blob.size}` })

const digestMismatch = (blob: BlobRef, actual: string) =>
  new CorruptState({ digest: blob.digest, reason: `blob content hashes to ${actual}` })

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
