/**
 * Lock manifests: what ghoten readers expect at `locked-<wsTag>` (lock artifact type, empty
 * layer, `org.terraform.lock.id` / `.info` / `.generation`, workspace), plus our candidate
 * annotations (candidate tag, lease expiry in milliseconds).
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Schema from "effect/Schema"
import { CorruptState } from "../../Errors.js"
import * as LockInfo from "../../LockInfo.js"
import { Annotation, ArtifactType, createdTimestamp, formatRevision } from "../../WireFormat.js"
import { type Descriptor, emptyConfig, encodeManifest, parseManifest } from "./manifest.js"

/** @internal */
export const CandidateAnnotation = {
  candidate: "io.oras-state.lock.candidate",
  expires: "io.oras-state.lock.expires",
  /**
   * On the copy published at `locked-<wsTag>`: it makes that copy's digest differ from the
   * candidate's, so deleting one never removes the other tag (distribution 2.8 races when a digest
   * delete removes a tag that is being re-written).
   */
  role: "io.oras-state.lock.role"
} as const

/** What a lock manifest says. @internal */
export interface LockRecord {
  /** Empty ID: the lock is free (the released marker). */
  readonly info: LockInfo.LockInfo
  readonly workspace: string | undefined
  /** Our protocol's candidate tag, when written by oras-state. */
  readonly candidate: string | undefined
  /** Lease expiry in epoch milliseconds (ours, or ghoten's `lease_expiry`), when the lock has a lease. */
  readonly expiresAt: number | undefined
}

/** @internal */
export const encodeLock = (options: {
  readonly workspace: string
  readonly info: LockInfo.LockInfo
  readonly candidate: string
  readonly expiresAt: number | undefined
  readonly now: number
  /** The copy for `locked-<wsTag>`. */
  readonly published?: boolean | undefined
}): Uint8Array => {
  // ghoten G3 generation JSON: lease_expiry in Unix nanoseconds (beyond 2^53, so built as text).
  const lease = options.expiresAt === undefined ? "" : `,"lease_expiry":${BigInt(options.expiresAt) * 1_000_000n}`
  const generation = `{"generation":1${lease},"holder_id":${JSON.stringify(options.info.ID)}}`
  return encodeManifest({
    artifactType: ArtifactType.lock,
    layers: [emptyConfig],
    annotations: {
      [Annotation.created]: createdTimestamp(options.now),
      [Annotation.workspace]: options.workspace,
      [Annotation.lockId]: options.info.ID,
      [Annotation.lockInfo]: LockInfo.toJson(options.info),
      [Annotation.lockGeneration]: generation,
      [Annotation.format]: formatRevision,
      [CandidateAnnotation.candidate]: options.candidate,
      ...(options.expiresAt === undefined ? {} : { [CandidateAnnotation.expires]: String(options.expiresAt) }),
      ...(options.published === true ? { [CandidateAnnotation.role]: "published" } : {})
    }
  })
}

/**
 * The candidate manifest a published copy was made from (our encoding is canonical, so dropping
 * the role annotation and re-encoding gives the candidate's exact bytes), or `undefined` when the
 * bytes are not a published copy of ours.
 *
 * @internal
 */
export const candidateBytesOf = (published: Uint8Array): Uint8Array | undefined => {
  try {
    const json = JSON.parse(new TextDecoder().decode(published)) as {
      artifactType?: string
      layers?: ReadonlyArray<Descriptor>
      annotations?: Record<string, string>
    }
    const annotations = { ...json.annotations }
    if (annotations[CandidateAnnotation.role] !== "published" || json.layers === undefined) return undefined
    delete annotations[CandidateAnnotation.role]
    return encodeManifest({ artifactType: json.artifactType ?? ArtifactType.lock, layers: json.layers, annotations })
  } catch {
    return undefined
  }
}

/** The released marker (as ghoten G3 writes it): a lock manifest with an empty ID. @internal */
export const encodeUnlockedMarker = (workspace: string, now: number): Uint8Array =>
  encodeManifest({
    artifactType: ArtifactType.lock,
    layers: [emptyConfig],
    annotations: {
      [Annotation.created]: createdTimestamp(now),
      [Annotation.workspace]: workspace,
      [Annotation.lockId]: "",
      [Annotation.lockInfo]: "",
      [Annotation.lockGeneration]: "{\"generation\":0}"
    }
  })

const decodeInfo = Schema.decodeUnknownEither(LockInfo.LockInfoFromJson)
const Generation = Schema.parseJson(Schema.Struct({ lease_expiry: Schema.optional(Schema.Number) }))
const decodeGeneration = Schema.decodeUnknownEither(Generation)

/** Read a lock manifest (ours, ghoten G0–G4, Terraform's copy). @internal */
export const readLock = (bytes: Uint8Array, digest: string): Effect.Effect<LockRecord, CorruptState> =>
  Effect.flatMap(parseManifest(bytes, digest), (manifest) => {
    const artifactType = manifest.artifactType ?? ""
    if (artifactType !== "" && artifactType !== ArtifactType.lock && artifactType !== ArtifactType.legacyLock) {
      return Effect.fail(new CorruptState({ digest, reason: `artifact type ${artifactType} is not a lock` }))
    }
    const a = manifest.annotations ?? {}
    const id = a[Annotation.lockId] ?? a[Annotation.legacyLockId] ?? ""
    const rawInfo = a[Annotation.lockInfo] ?? a[Annotation.legacyLockInfo] ?? ""
    let info: LockInfo.LockInfo
    if (rawInfo.trim() === "") {
      info = LockInfo.make({ ID: id })
    } else {
      const decoded = decodeInfo(rawInfo)
      if (Either.isLeft(decoded)) {
        return Effect.fail(new CorruptState({ digest, reason: "lock info annotation is not LockInfo JSON" }))
      }
      info = decoded.right.ID === "" ? { ...decoded.right, ID: id } : decoded.right
    }
    const ours = a[CandidateAnnotation.expires]
    let expiresAt: number | undefined
    if (ours !== undefined && /^\d{1,16}$/.test(ours)) {
      expiresAt = Number(ours)
    } else if (a[Annotation.lockGeneration] !== undefined) {
      const generation = decodeGeneration(a[Annotation.lockGeneration])
      const ns = Either.isRight(generation) ? generation.right.lease_expiry : undefined
      expiresAt = ns !== undefined && ns > 0 ? Math.floor(ns / 1_000_000) : undefined
    }
    return Effect.succeed({
      info,
      workspace: a[Annotation.workspace] ?? a[Annotation.legacyWorkspace],
      candidate: a[CandidateAnnotation.candidate],
      expiresAt
    })
  })
