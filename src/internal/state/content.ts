/**
 * State bytes on the wire: optional gzip on write, streaming gunzip on read with the size limit
 * enforced on the *decompressed* bytes as they are produced (a gzip bomb stops at the limit), and
 * the MD5 OpenTofu's `remote.Payload` carries.
 *
 * Memory: a raw state is read into one buffer of its declared size; a gzip state into one buffer
 * of the size our writer records in the layer annotation (verified), else chunks joined once.
 *
 * @internal
 */
import * as NodeStream from "@effect/platform-node/NodeStream"
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"
import * as Crypto from "node:crypto"
import * as Zlib from "node:zlib"
import * as Digest from "../../Digest.js"
import { CorruptState, StateTooLarge } from "../../Errors.js"
import type { BlobBody } from "../../Registry.js"
import { Annotation, LayerMediaType } from "../../WireFormat.js"
import type { Descriptor, StateLayerKind } from "./manifest.js"

/** @internal */
export type Compression = "none" | "gzip"

/** @internal */
export interface EncodedState {
  readonly body: BlobBody
  readonly descriptor: Descriptor
}

/** @internal */
export const md5 = (data: Uint8Array): Uint8Array => new Uint8Array(Crypto.createHash("md5").update(data).digest())

/** Encode state bytes as the layer blob and its descriptor. @internal */
export const encodeState = (data: Uint8Array, compression: Compression): Effect.Effect<EncodedState> =>
  compression === "none"
    ? Effect.sync(() => ({
      body: data,
      descriptor: { mediaType: LayerMediaType.state, digest: Digest.sha256(data), size: data.byteLength }
    }))
    : Effect.map(gzip(data), (compressed) => ({
      body: compressed,
      descriptor: {
        mediaType: LayerMediaType.stateGzip,
        digest: Digest.sha256(compressed),
        size: compressed.byteLength,
        annotations: { [Annotation.uncompressedSize]: String(data.byteLength) }
      }
    }))

// Level 1 (as ghoten): state JSON compresses well even at the fastest level, and this runs on every put.
const gzip = (data: Uint8Array): Effect.Effect<Uint8Array> =>
  Effect.async<Uint8Array>((resume) => {
    Zlib.gzip(data, { level: 1 }, (error, result) => {
      // Compressing an in-memory buffer cannot fail short of memory exhaustion: a defect.
      resume(error === null ? Effect.succeed(new Uint8Array(result.buffer, result.byteOffset, result.byteLength)) : Effect.die(error))
    })
  })

/**
 * Decode a verified layer stream into state bytes, failing with `StateTooLarge` as soon as the
 * decoded size passes `maxSize`.
 *
 * @internal
 */
export const decodeState = <E>(
  layer: Stream.Stream<Uint8Array, E>,
  kind: StateLayerKind,
  options: { readonly maxSize: number; readonly sizeHint: number | undefined; readonly digest: string }
): Effect.Effect<Uint8Array, E | CorruptState | StateTooLarge> => {
  if (kind === "raw") return collectLimited(layer, options.maxSize, options.sizeHint)
  return Effect.suspend(() => {
    // The gunzip duplex reports every failure through one callback, including those of the layer
    // stream feeding it (it then sees truncated input). Remember the layer's own failure so that a
    // transient download error or a digest mismatch is reported as what it is, not as bad gzip.
    let upstream: { readonly error: E } | undefined
    const source = layer.pipe(Stream.tapError((error) =>
      Effect.sync(() => {
        upstream = { error }
      })
    ))
    const decoded: Stream.Stream<Uint8Array, E | CorruptState> = NodeStream.pipeThroughDuplex(
      source,
      () => Zlib.createGunzip(),
      () => new CorruptState({ digest: options.digest, reason: "state layer is not valid gzip" })
    )
    return collectLimited(decoded, options.maxSize, options.sizeHint).pipe(
      Effect.catchAll((error): Effect.Effect<never, E | CorruptState | StateTooLarge> =>
        upstream !== undefined && !isStateTooLarge(error) ? Effect.fail(upstream.error) : Effect.fail(error)
      )
    )
  })
}

const isStateTooLarge = (u: unknown): u is StateTooLarge => u instanceof StateTooLarge

const collectLimited = <E>(
  stream: Stream.Stream<Uint8Array, E>,
  maxSize: number,
  sizeHint: number | undefined
): Effect.Effect<Uint8Array, E | StateTooLarge> =>
  Effect.suspend(() => {
    // One preallocated buffer when the size is known and sane; chunks otherwise.
    let buffer = sizeHint !== undefined && sizeHint <= maxSize ? new Uint8Array(sizeHint) : undefined
    let chunks: Array<Uint8Array> = []
    let size = 0
    return stream.pipe(
      Stream.runForEach((chunk) => {
        const next = size + chunk.byteLength
        if (next > maxSize) return Effect.fail(new StateTooLarge({ limit: maxSize }))
        if (buffer !== undefined && next <= buffer.byteLength) {
          buffer.set(chunk, size)
        } else {
          if (buffer !== undefined) {
            // The hint was wrong: fall back to chunks.
            chunks = [buffer.subarray(0, size)]
            buffer = undefined
          }
          chunks.push(chunk)
        }
        size = next
        return Effect.void
      }),
      Effect.map(() => {
        if (buffer !== undefined) return size === buffer.byteLength ? buffer : buffer.slice(0, size)
        if (chunks.length === 1) return chunks[0]!
        const out = new Uint8Array(size)
        let offset = 0
        for (const chunk of chunks) {
          out.set(chunk, offset)
          offset += chunk.byteLength
        }
        return out
      })
    )
  })
