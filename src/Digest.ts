/**
 * Content digests (`sha256:<64 lowercase hex>`), the identity of every blob and manifest.
 *
 * @since 0.1.0
 */
import * as Schema from "effect/Schema"
import * as Crypto from "node:crypto"

const digestPattern = /^sha256:[a-f0-9]{64}$/

/**
 * A canonical sha256 digest string.
 *
 * @since 0.1.0
 * @category models
 */
export const Digest = Schema.String.pipe(
  Schema.pattern(digestPattern),
  Schema.brand("oras-state/Digest")
)

/**
 * @since 0.1.0
 * @category models
 */
export type Digest = typeof Digest.Type

/**
 * Whether `u` is a canonical digest (the pattern tested directly: `Schema.is` cost more than the
 * request it guards).
 *
 * @since 0.1.0
 * @category guards
 */
export const isDigest = (u: unknown): u is Digest => typeof u === "string" && digestPattern.test(u)

/**
 * sha256 of the given bytes (one buffer or a list of chunks).
 *
 * @since 0.1.0
 * @category constructors
 */
export const sha256 = (data: Uint8Array | ReadonlyArray<Uint8Array>): Digest => {
  const hash = Crypto.createHash("sha256")
  if (data instanceof Uint8Array) hash.update(data)
  else for (const chunk of data) hash.update(chunk)
  return `sha256:${hash.digest("hex")}` as Digest
}

/**
 * An incremental sha256 that also counts bytes, for verifying streamed content.
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeHasher = (): {
  readonly update: (chunk: Uint8Array) => void
  readonly size: () => number
  readonly digest: () => Digest
} => {
  const hash = Crypto.createHash("sha256")
  let size = 0
  return {
    update: (chunk) => {
      size += chunk.byteLength
      hash.update(chunk)
    },
    size: () => size,
    digest: () => `sha256:${hash.digest("hex")}` as Digest
  }
}

/**
 * The digest of the OCI empty JSON blob `{}`, used as config of every artifact manifest.
 *
 * @since 0.1.0
 * @category constants
 */
export const emptyJsonDigest = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a" as Digest
