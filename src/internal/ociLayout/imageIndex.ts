/**
 * The `index.json` of an OCI image layout, as pure data and pure edits.
 *
 * Conventions (image-spec `image-layout.md`, and what skopeo / containers-image read):
 * - a tag is a descriptor whose `annotations["org.opencontainers.image.ref.name"]` is the tag; a
 *   manifest with several tags appears once per tag;
 * - a manifest pushed by digest (or one whose last tag moved away or was removed) appears once,
 *   without a ref name, so that it stays listed and reachable by digest — the set of manifests in
 *   the repository is exactly the set of digests in `manifests`;
 * - fields we do not know (top-level or per descriptor, e.g. `platform`, written by other tools)
 *   are kept as they were.
 *
 * @internal
 */
import * as Either from "effect/Either"
import * as Digest from "../../Digest.js"
import { MediaType } from "../../Registry.js"

/** @internal */
export const refNameAnnotation = "org.opencontainers.image.ref.name"

/** @internal */
export interface Descriptor {
  readonly mediaType: string
  readonly digest: string
  readonly size: number
  readonly annotations?: Readonly<Record<string, string>> | undefined
  readonly [extra: string]: unknown
}

/** @internal */
export interface ImageIndex {
  /** Every top-level field as read, `manifests` included (it is replaced on write). */
  readonly fields: Readonly<Record<string, unknown>>
  readonly manifests: ReadonlyArray<Descriptor>
}

/** @internal */
export const empty: ImageIndex = { fields: {}, manifests: [] }

/** @internal */
export const refName = (d: Descriptor): string | undefined => d.annotations?.[refNameAnnotation]

const isRecordOfStrings = (u: unknown): u is Record<string, string> =>
  typeof u === "object" && u !== null && !Array.isArray(u) && Object.values(u).every((v) => typeof v === "string")

const isDescriptor = (u: unknown): u is Descriptor => {
  if (typeof u !== "object" || u === null || Array.isArray(u)) return false
  const d = u as Record<string, unknown>
  return typeof d["mediaType"] === "string" &&
    typeof d["digest"] === "string" &&
    typeof d["size"] === "number" && Number.isSafeInteger(d["size"]) && d["size"] >= 0 &&
    (d["annotations"] === undefined || isRecordOfStrings(d["annotations"]))
}

/**
 * Parse `index.json` bytes; `Left(reason)` when they are not an OCI image index.
 *
 * @internal
 */
export const parse = (bytes: Uint8Array): Either.Either<ImageIndex, string> => {
  let json: unknown
  try {
    json = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes))
  } catch (error) {
    return Either.left(`index.json is not JSON: ${error instanceof Error ? error.message : String(error)}`)
  }
  if (typeof json !== "object" || json === null || Array.isArray(json)) return Either.left("index.json is not an object")
  const fields = json as Record<string, unknown>
  if (fields["schemaVersion"] !== 2) return Either.left("index.json schemaVersion is not 2")
  if (fields["mediaType"] !== undefined && fields["mediaType"] !== MediaType.ociIndex) {
    return Either.left(`index.json mediaType is ${JSON.stringify(fields["mediaType"])}`)
  }
  const manifests = fields["manifests"] ?? []
  if (!Array.isArray(manifests)) return Either.left("index.json manifests is not an array")
  const bad = manifests.findIndex((d) => !isDescriptor(d))
  if (bad >= 0) return Either.left(`index.json manifests[${bad}] is not a valid descriptor`)
  return Either.right({ fields, manifests: manifests as ReadonlyArray<Descriptor> })
}

/** @internal */
export const serialize = (index: ImageIndex): Uint8Array =>
  new TextEncoder().encode(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MediaType.ociIndex,
      ...index.fields,
      manifests: index.manifests
    })
  )

/** The descriptor a tag points at. @internal */
export const findTag = (index: ImageIndex, tag: string): Descriptor | undefined =>
  index.manifests.find((d) => refName(d) === tag)

/** A descriptor of the manifest with this digest, if the repository holds it. @internal */
export const findDigest = (index: ImageIndex, digest: string): Descriptor | undefined =>
  index.manifests.find((d) => d.digest === digest)

/** Every tag (a ref name that is a valid tag), each once, sorted. @internal */
export const tags = (index: ImageIndex, isTag: (s: string) => boolean): Array<string> => {
  const out = new Set<string>()
  for (const d of index.manifests) {
    const name = refName(d)
    if (name !== undefined && isTag(name)) out.add(name)
  }
  return [...out].sort()
}

/** Every distinct manifest digest in the repository. @internal */
export const digests = (index: ImageIndex): Array<Digest.Digest> => [
  ...new Set(index.manifests.map((d) => d.digest).filter(Digest.isDigest))
]

const withoutRefName = (d: Descriptor): Descriptor => {
  if (d.annotations === undefined) return d
  const { [refNameAnnotation]: _, ...rest } = d.annotations
  const { annotations: __, ...descriptor } = d
  return Object.keys(rest).length === 0 ? descriptor as Descriptor : { ...descriptor, annotations: rest }
}

// Manifests that lost their last descriptor stay in the repository, untagged.
const keepReachable = (
  manifests: ReadonlyArray<Descriptor>,
  removed: ReadonlyArray<Descriptor>
): ReadonlyArray<Descriptor> => {
  const out = [...manifests]
  for (const d of removed) {
    if (!out.some((m) => m.digest === d.digest)) out.push(withoutRefName(d))
  }
  return out
}

/**
 * Point `tag` at `manifest`: the tag's previous manifest stays (untagged if it has no other tag),
 * and an untagged entry of `manifest` is replaced by the tagged one.
 *
 * @internal
 */
export const setTag = (
  index: ImageIndex,
  tag: string,
  manifest: { readonly mediaType: string; readonly digest: string; readonly size: number }
): ImageIndex => {
  const removed = index.manifests.filter((d) => refName(d) === tag)
  const kept = index.manifests.filter((d) =>
    refName(d) !== tag && !(d.digest === manifest.digest && refName(d) === undefined)
  )
  const entry: Descriptor = {
    mediaType: manifest.mediaType,
    digest: manifest.digest,
    size: manifest.size,
    annotations: { [refNameAnnotation]: tag }
  }
  return { ...index, manifests: keepReachable([...kept, entry], removed) }
}

/**
 * Record a manifest pushed by digest; unchanged (`undefined`) when the repository holds it already.
 *
 * @internal
 */
export const addUntagged = (
  index: ImageIndex,
  manifest: { readonly mediaType: string; readonly digest: string; readonly size: number }
): ImageIndex | undefined =>
  findDigest(index, manifest.digest) !== undefined
    ? undefined
    : {
      ...index,
      manifests: [...index.manifests, { mediaType: manifest.mediaType, digest: manifest.digest, size: manifest.size }]
    }

/**
 * Remove a tag (the manifest stays, untagged if it has no other tag); `undefined` when the tag
 * does not exist.
 *
 * @internal
 */
export const removeTag = (index: ImageIndex, tag: string): ImageIndex | undefined => {
  const removed = index.manifests.filter((d) => refName(d) === tag)
  if (removed.length === 0) return undefined
  return { ...index, manifests: keepReachable(index.manifests.filter((d) => refName(d) !== tag), removed) }
}

/**
 * Remove a manifest and every tag on it; `undefined` when the repository does not hold it.
 *
 * @internal
 */
export const removeDigest = (index: ImageIndex, digest: string): ImageIndex | undefined => {
  const manifests = index.manifests.filter((d) => d.digest !== digest)
  return manifests.length === index.manifests.length ? undefined : { ...index, manifests }
}
