/**
 * State bytes on the wire: optional gzip on write, streaming gunzip on read with the size limit
 * enforced on the *decompressed* bytes as they are produced (a gzip bomb stops at the limit), and
 * the MD5 OpenTofu's `remote.Payload` carries.
 *
 * Memory: a gzip state is gunzipped into one buffer of the size our writer records in the layer
 * annotation (verified), else chunks joined once (a raw state is read by `Registry.getBlobBytes`). A
 * gzip write keeps the compressed output as the chunks zlib produced (uploaded in order, hashed
 * without joining): the state plus its compressed form, never a second copy of either.
 *
 * CPU: streams are consumed a `Chunk` (one network read) at a time, and the MD5 of a read state
 * is computed only when asked for (`withLazyMd5`): at ~400 MiB/s it cost more than the download
 * of a loopback registry, and most readers (the HTTP-backend server hashes what it sends itself)
 * never look at it.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"
import * as Crypto from "node:crypto"
import * as Zlib from "node:zlib"
import * as Digest from "../../Digest.js"
import { CorruptState, StateTooLarge } from "../../Errors.js"
import type { BlobBody } from "../../Registry.js"
import { Annotation, LayerMediaType } from "../../WireFormat.js"
import type { Descriptor } from "./manifest.js"

/** @internal */
export type Compression = "none" | "gzip"

/** @internal */
export interface EncodedState {
  readonly body: BlobBody
  readonly descriptor: Descriptor
}

/** @internal */
export const md5 = (data: Uint8Array): Uint8Array => new Uint8Array(Crypto.createHash("md5").update(data).digest())

/**
 * `fields` plus an enumerable `md5` of `fields.data`, computed on first access and remembered.
 *
 * @internal
 */
export const withLazyMd5 = <A extends { readonly data: Uint8Array }>(fields: A): A & { readonly md5: Uint8Array } => {
  let cached: Uint8Array | undefined
  return Object.defineProperty({ ...fields }, "md5", {
    enumerable: true,
    get: () => (cached ??= md5(fields.data))
  }) as A & { readonly md5: Uint8Array }
}

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
        size: compressed.reduce((size, chunk) => size + chunk.byteLength, 0),
        annotations: { [Annotation.uncompressedSize]: String(data.byteLength) }
      }
    }))

// Level 1 (as ghoten): state JSON compresses well even at the fastest level, and this runs on every put.
// The output stays in zlib's chunks (`Zlib.gzip` would join them: a second copy of the compressed
// state); compression runs on libuv's thread pool either way.
const gzip = (data: Uint8Array): Effect.Effect<ReadonlyArray<Uint8Array>> =>
  Effect.async<ReadonlyArray<Uint8Array>>((resume) => {
    const chunks: Array<Uint8Array> = []
    const deflate = Zlib.createGzip({ level: 1, chunkSize: 256 * 1024 })
    deflate.on("data", (chunk: Buffer) => chunks.push(chunk))
    deflate.once("end", () => resume(Effect.succeed(chunks)))
    // Compressing an in-memory buffer cannot fail short of memory exhaustion: a defect.
    deflate.once("error", (error) => resume(Effect.die(error)))
    deflate.end(data)
    return Effect.sync(() => deflate.destroy())
  })

/**
 * Decode a verified gzip layer stream into state bytes, failing with `StateTooLarge` as soon as the
 * decoded size passes `maxSize`. (A raw layer is the state itself: `Registry.getBlobBytes`.)
 *
 * @internal
 */
export const decodeState = <E>(
  layer: Stream.Stream<Uint8Array, E>,
  options: { readonly maxSize: number; readonly sizeHint: number | undefined; readonly digest: string }
): Effect.Effect<Uint8Array, E | CorruptState | StateTooLarge> => gunzipInto(layer, options)

/**
 * Gunzip a layer stream straight into a collector. The layer is written with backpressure (a write
 * that fills zlib's input buffer waits for `drain`; `NodeStream.pipeThroughDuplex` does not wait
 * between chunks, so a download faster than gunzip piled the compressed state up in memory), and
 * the output is copied as zlib produces it, without a stream step per output chunk. A failure of
 * the layer itself (a transient download error, a digest mismatch) is reported as what it is.
 */
const gunzipInto = <E>(
  layer: Stream.Stream<Uint8Array, E>,
  options: { readonly maxSize: number; readonly sizeHint: number | undefined; readonly digest: string }
): Effect.Effect<Uint8Array, E | CorruptState | StateTooLarge> =>
  Effect.acquireUseRelease(
    Effect.sync(() => Zlib.createGunzip({ chunkSize: 256 * 1024 })),
    (gunzip) =>
      Effect.suspend(() => {
        const collector = makeCollector(options.maxSize, options.sizeHint)
        let failure: CorruptState | StateTooLarge | undefined
        let settled = false
        gunzip.on("data", (chunk: Buffer) => {
          if (failure !== undefined) return
          failure = collector.push(chunk)
          // A gzip bomb stops here: nothing more is inflated.
          if (failure !== undefined) gunzip.destroy()
        })
        gunzip.once("error", () => {
          failure ??= corruptGzip(options.digest)
          settled = true
        })
        gunzip.once("end", () => {
          settled = true
        })
        gunzip.once("close", () => {
          settled = true
        })
        // Resumes once `ready()` holds, re-checked on every event that can change it.
        const until = (ready: () => boolean) =>
          Effect.async<void>((resume) => {
            if (ready()) return resume(Effect.void)
            const events = ["drain", "end", "close", "error"] as const
            const check = () => {
              if (!ready()) return
              for (const event of events) gunzip.off(event, check)
              resume(Effect.void)
            }
            for (const event of events) gunzip.on(event, check)
            return Effect.sync(() => {
              for (const event of events) gunzip.off(event, check)
            })
          })
        const written = Stream.runForEachChunk(layer, (parts) => {
          if (failure !== undefined || settled) return Effect.fail(failure ?? corruptGzip(options.digest))
          let ready = true
          for (const chunk of parts) ready = gunzip.write(chunk)
          return ready ? Effect.void : until(() => settled || !gunzip.writableNeedDrain)
        })
        return Effect.zipRight(
          written,
          Effect.suspend(() => {
            if (!settled) gunzip.end()
            return Effect.flatMap(until(() => settled), () =>
              failure !== undefined ? Effect.fail(failure) : Effect.succeed(collector.result()))
          })
        )
      }),
    (gunzip) => Effect.sync(() => gunzip.destroy())
  )

const corruptGzip = (digest: string) => new CorruptState({ digest, reason: "state layer is not valid gzip" })

/**
 * Decoded bytes, gathered up to `maxSize`. With a sane size hint: the first chunk itself when it
 * already is the whole state (a blob read in one go), else one buffer of the hinted size, filled as
 * chunks arrive. Without one (or when the hint proves wrong): chunks, joined once.
 */
const makeCollector = (maxSize: number, sizeHint: number | undefined) => {
  let allocate = sizeHint !== undefined && sizeHint <= maxSize
  let buffer: Uint8Array | undefined
  let chunks: Array<Uint8Array> = []
  let size = 0
  return {
    push: (chunk: Uint8Array): StateTooLarge | undefined => {
      const next = size + chunk.byteLength
      if (next > maxSize) return new StateTooLarge({ limit: maxSize })
      if (allocate) {
        allocate = false
        if (chunk.byteLength === sizeHint) {
          chunks = [chunk]
          size = next
          return undefined
        }
        buffer = new Uint8Array(sizeHint!)
      }
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
      return undefined
    },
    result: (): Uint8Array => {
      if (buffer !== undefined) return size === buffer.byteLength ? buffer : buffer.slice(0, size)
      if (chunks.length === 1) return chunks[0]!
      const out = new Uint8Array(size)
      let offset = 0
      for (const chunk of chunks) {
        out.set(chunk, offset)
        offset += chunk.byteLength
      }
      return out
    }
  }
}
