/**
 * What a manifest references, for the MANIFEST_BLOB_UNKNOWN check on PUT and for blob garbage
 * collection on DELETE. Same rules as `MemoryRegistry` (a real registry's behaviour).
 *
 * @internal
 */
import * as Either from "effect/Either"
import * as Digest from "../../Digest.js"

/**
 * The digests a manifest references (config, layers, index entries), which must exist before it
 * may be stored. `Left(reason)` when the bytes are not a manifest of `mediaType`.
 *
 * @internal
 */
export const referencedDigests = (
  bytes: Uint8Array,
  mediaType: string | undefined
): Either.Either<ReadonlyArray<Digest.Digest>, string> => {
  let json: unknown
  try {
    json = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes))
  } catch {
    return Either.left("unparseable")
  }
  if (typeof json !== "object" || json === null || Array.isArray(json)) return Either.left("not an object")
  const m = json as { mediaType?: unknown; config?: unknown; layers?: unknown; manifests?: unknown }
  if (mediaType !== undefined && m.mediaType !== undefined && m.mediaType !== mediaType) {
    return Either.left("mediaType mismatch")
  }
  const digests: Array<unknown> = []
  if (m.config !== undefined) digests.push((m.config as { digest?: unknown } | null)?.digest)
  for (const list of [m.layers, m.manifests]) {
    if (list === undefined) continue
    if (!Array.isArray(list)) return Either.left("descriptor list is not an array")
    for (const d of list) digests.push((d as { digest?: unknown } | null)?.digest)
  }
  if (!digests.every(Digest.isDigest)) return Either.left("invalid descriptor digest")
  return Either.right(digests as ReadonlyArray<Digest.Digest>)
}
