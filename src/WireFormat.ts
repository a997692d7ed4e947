/**
 * The wire format shared with the OpenTofu "oras" backend family (ghoten, layout L1): tags, media
 * types and annotations. State written by either is read by the other.
 *
 * Tags of a workspace (`wsTag`, see `workspaceTag`):
 * - `state-<wsTag>`: the current state manifest;
 * - `stver-<wsTag>-v<N>`: version N (written by us; the old `state-<wsTag>-v<N>` form is read only
 *   when its `org.terraform.workspace` annotation proves it is a version and not the state of a
 *   workspace named `<name>-v<N>`);
 * - `locked-<wsTag>`: the lock, as ghoten readers look for it; `unlocked-<wsTag>`: the released
 *   marker on registries without DELETE.
 *
 * `wsTag` is the workspace name when it is a valid tag short enough that *every* derived tag stays
 * within the 128-character limit (the longest is `stver-<wsTag>-v<2^30>`, so ≤ 110 characters),
 * else `ws-` + 16 hex of SHA-256 — the name always sits in `org.terraform.workspace`. (ghoten checks
 * only the bare name and can produce over-long version tags; we do not repeat that.)
 *
 * @since 0.1.0
 */
import * as Crypto from "node:crypto"

/**
 * @since 0.1.0
 * @category constants
 */
export const ArtifactType = {
  state: "application/vnd.terraform.state.v1",
  lock: "application/vnd.terraform.lock.v1",
  /** ghoten G0/G1 names, read only. */
  legacyState: "application/vnd.opentofu.state.v1",
  legacyLock: "application/vnd.opentofu.lock.v1"
} as const

/**
 * @since 0.1.0
 * @category constants
 */
export const LayerMediaType = {
  state: "application/vnd.terraform.statefile.v1",
  stateGzip: "application/vnd.terraform.statefile.v1+gzip",
  legacyState: "application/vnd.opentofu.statefile.v1",
  legacyStateGzip: "application/vnd.opentofu.statefile.v1+gzip"
} as const

/**
 * @since 0.1.0
 * @category constants
 */
export const Annotation = {
  created: "org.opencontainers.image.created",
  workspace: "org.terraform.workspace",
  updatedAt: "org.terraform.state.updated_at",
  version: "org.terraform.state.version",
  lockId: "org.terraform.lock.id",
  lockInfo: "org.terraform.lock.info",
  lockGeneration: "org.terraform.lock.generation",
  legacyWorkspace: "org.opentofu.workspace",
  legacyLockId: "org.opentofu.lock.id",
  legacyLockInfo: "org.opentofu.lock.info",
  /** Ours: the digest of the state manifest this one replaced (lost updates become detectable). */
  parent: "io.oras-state.state.parent",
  /** Ours: the decompressed size of a gzip layer (an allocation hint, verified on read). */
  uncompressedSize: "io.oras-state.state.size",
  /** Ours: a copy of a version manifest made so its original could be deleted with the state. */
  detached: "io.oras-state.state.detached",
  /** Ours: the format revision of what we wrote. */
  format: "io.oras-state.format"
} as const

/**
 * @since 0.1.0
 * @category constants
 */
export const formatRevision = "1"

/**
 * The highest version number accepted in a version tag (as ghoten's parser).
 *
 * @since 0.1.0
 * @category constants
 */
export const maxVersion = 2 ** 30

const tagGrammar = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/
/** `stver-` + wsTag + `-v` + up to 10 digits must fit in 128 characters. */
const maxLiteralWorkspaceTag = 128 - "stver-".length - "-v".length - String(maxVersion).length

/**
 * The short hash of a workspace name: first 8 bytes of SHA-256, hex.
 *
 * @since 0.1.0
 * @category utils
 */
export const workspaceHash = (name: string): string =>
  Crypto.createHash("sha256").update(name, "utf8").digest("hex").slice(0, 16)

/**
 * The tag form of a workspace name.
 *
 * @since 0.1.0
 * @category utils
 */
export const workspaceTag = (name: string): string =>
  tagGrammar.test(name) && name.length <= maxLiteralWorkspaceTag ? name : `ws-${workspaceHash(name)}`

/**
 * @since 0.1.0
 * @category utils
 */
export const stateTag = (wsTag: string): string => `state-${wsTag}`

/**
 * @since 0.1.0
 * @category utils
 */
export const lockTag = (wsTag: string): string => `locked-${wsTag}`

/**
 * @since 0.1.0
 * @category utils
 */
export const unlockedTag = (wsTag: string): string => `unlocked-${wsTag}`

/**
 * @since 0.1.0
 * @category utils
 */
export const versionTag = (wsTag: string, version: number): string => `stver-${wsTag}-v${version}`

/**
 * @since 0.1.0
 * @category utils
 */
export const legacyVersionTag = (wsTag: string, version: number): string => `state-${wsTag}-v${version}`

const parseVersionNumber = (digits: string): number | undefined => {
  if (!/^[1-9][0-9]{0,9}$/.test(digits)) return undefined
  const n = Number(digits)
  return n <= maxVersion ? n : undefined
}

/**
 * The version number of `tag` if it is exactly `stver-<wsTag>-v<N>` (never a prefix match: for
 * `foo`, `stver-foo-vbar-v1` and `stver-foo-v2-v3` are not versions).
 *
 * @since 0.1.0
 * @category utils
 */
export const parseVersionTag = (wsTag: string, tag: string): number | undefined => {
  const prefix = `stver-${wsTag}-v`
  return tag.startsWith(prefix) ? parseVersionNumber(tag.slice(prefix.length)) : undefined
}

/**
 * The version number of `tag` if it has the old form `state-<wsTag>-v<N>`. Ambiguous by itself:
 * it is also the state tag of workspace `<wsTag>-v<N>`; callers check the workspace annotation.
 *
 * @since 0.1.0
 * @category utils
 */
export const parseLegacyVersionTag = (wsTag: string, tag: string): number | undefined => {
  const prefix = `state-${wsTag}-v`
  return tag.startsWith(prefix) ? parseVersionNumber(tag.slice(prefix.length)) : undefined
}

/**
 * The tags that belong to a workspace exactly: state, lock, released marker, version tags of both
 * forms (legacy ones still need the annotation check before deletion).
 *
 * @since 0.1.0
 * @category utils
 */
export const isWorkspaceTag = (wsTag: string, tag: string): boolean =>
  tag === stateTag(wsTag) || tag === lockTag(wsTag) || tag === unlockedTag(wsTag) ||
  parseVersionTag(wsTag, tag) !== undefined

/**
 * RFC 3339 with seconds precision, as ORAS writes `org.opencontainers.image.created`.
 *
 * @since 0.1.0
 * @category utils
 */
export const createdTimestamp = (millis: number): string => new Date(millis).toISOString().replace(/\.\d{3}Z$/, "Z")

/**
 * RFC 3339 with trailing fractional zeros trimmed, as Go's RFC3339Nano writes `updated_at`.
 *
 * @since 0.1.0
 * @category utils
 */
export const updatedAtTimestamp = (millis: number): string =>
  new Date(millis).toISOString().replace(/\.(\d*?)0*Z$/, (_, frac: string) => (frac === "" ? "Z" : `.${frac}Z`))
