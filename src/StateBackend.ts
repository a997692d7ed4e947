/**
 * `StateBackend` and `StateManager`: Terraform/OpenTofu state in an OCI repository, over any
 * `Registry` layer, wire-compatible with the OpenTofu "oras" backend (see `WireFormat`).
 *
 * - `get`: one manifest GET by tag and one blob GET; layer digest and size verified; artifact and
 *   media types checked strictly; gzip decoded streaming; `maxStateSize` enforced on the decoded
 *   size as it streams (and before downloading, when the layer's size already says it is over);
 *   a manifest without layers is no state.
 * - Workspaces sharing a tag (a literal `ws-<hash>` name and the hashed name it equals) never read,
 *   overwrite or delete each other's content: the workspace annotation is checked on every read
 *   and before every deletion.
 * - `put`: refuses over-size state before uploading; blob POST+PUT and one manifest PUT by tag
 *   (plus the empty config blob once per process), the version tag when versioning is on, and one
 *   fence request when writing under a lock (or the parent read, when this process did not read
 *   the state under that lock); the blob upload overlaps the fence and the parent read, so a put
 *   costs three round trips. A transient failure of the tag PUT is *observed* (resolved), never
 *   blindly re-sent. Every state manifest records its parent digest.
 * - Versions: numbered by the `org.terraform.state.version` annotation of the current state (a tag
 *   scan only when a legacy state lacks it, or when there is no state: a history whose state was
 *   deleted continues instead of being overwritten from 1); a failed read fails the put, numbering
 *   never restarts silently. `restore(n)` rolls forward (a new version with the bytes of n). Old
 *   ghoten version tags `state-<wsTag>-v<N>` count only where their workspace annotation proves
 *   them (they may be the state of workspace `<name>-v<N>`). Retention (`maxVersions`) runs in supervised fibers owned by the backend's scope,
 *   costs O(pruned) requests after one tag scan per workspace and process, never fails a put that
 *   landed (it logs and retries with the next put), and `awaitRetention` waits for it.
 * - Locks: see `internal/state/lock.ts` for the protocol and its safety argument.
 *
 * @since 0.1.0
 */
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as FiberSet from "effect/FiberSet"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import * as Digest from "./Digest.js"
import {
  CorruptState,
  type InconsistentRead,
  InvalidReference,
  isOrasStateError,
  isTransientRegistry,
  LockConflict,
  type LockIdMismatch,
  type LockLost,
  RegistryError,
  type RegistryFailure,
  StateTooLarge,
  type Unsupported
} from "./Errors.js"
import { isValidTag } from "./internal/reference.js"
import { type Compression, decodeState, encodeState, withLazyMd5 } from "./internal/state/content.js"
import { RequestsOnTheWire } from "./internal/state/onTheWire.js"
import { type Holder, makeLock } from "./internal/state/lock.js"
import {
  emptyConfigBytes,
  encodeManifest,
  parseManifest,
  readStateManifest,
  type StateManifest
} from "./internal/state/manifest.js"
import { type Output, readOutputs } from "./internal/state/outputs.js"
import { defaultWorkspace, validateWorkspace, type WorkspaceTags } from "./internal/state/workspace.js"
import { annotateBytes, stateAttributes, stateOperation } from "./internal/telemetry.js"
import type * as LockInfo from "./LockInfo.js"
import { MediaType, Registry } from "./Registry.js"
import * as WireFormat from "./WireFormat.js"

/**
 * @since 0.1.0
 * @category models
 */
export interface StatePayload {
  readonly data: Uint8Array
  /** MD5 of `data`, as OpenTofu's `remote.Payload` carries it (computed on first access). */
  readonly md5: Uint8Array
  /** Digest of the state manifest: the identity of this version. */
  readonly digest: Digest.Digest
  readonly version: number | undefined
  readonly updatedAt: string | undefined
}

/**
 * @since 0.1.0
 * @category models
 */
export interface PutResult {
  readonly digest: Digest.Digest
  readonly version: number
  /** False when versioning is on but the version tag could not be written (the state landed). */
  readonly versionTagged: boolean
}

/**
 * @since 0.1.0
 * @category models
 */
export interface VersionInfo {
  readonly version: number
  readonly digest: Digest.Digest
  /** Size of the stored layer (compressed when gzip). */
  readonly size: number
  readonly updatedAt: string | undefined
  readonly current: boolean
}

/**
 * @since 0.1.0
 * @category models
 */
export interface CurrentLockInfo {
  readonly info: LockInfo.LockInfo
  /** Lease end (epoch ms), when the lock has a lease. */
  readonly expiresAt: number | undefined
  /** Written by oras-state (false: another client, e.g. ghoten). */
  readonly ours: boolean
}

/**
 * @since 0.1.0
 * @category models
 */
export type StoreError = RegistryFailure | CorruptState | Unsupported | InconsistentRead

/**
 * @since 0.1.0
 * @category models
 */
export interface StateManager {
  readonly workspace: string
  readonly get: Effect.Effect<Option.Option<StatePayload>, StoreError | StateTooLarge>
  /** Publish a new state. With `lockId`, the write is fenced: it lands only while that lock is held. */
  readonly put: (
    data: Uint8Array,
    options?: { readonly lockId?: string | undefined }
  ) => Effect.Effect<PutResult, StoreError | StateTooLarge | LockLost>
  /** Remove the current state (versions and lock stay). True when there was one. */
  readonly delete: Effect.Effect<boolean, StoreError>
  readonly lock: (info: LockInfo.LockInfo) => Effect.Effect<string, StoreError | LockConflict>
  readonly unlock: (id: string) => Effect.Effect<void, StoreError | LockIdMismatch>
  /** Remove whatever lock is held (if `expectedId` is given, only that one); returns whom it removed. */
  readonly forceUnlock: (
    expectedId?: string
  ) => Effect.Effect<Option.Option<LockInfo.LockInfo>, StoreError | LockIdMismatch>
  readonly lockInfo: Effect.Effect<Option.Option<CurrentLockInfo>, StoreError>
  /**
   * Run `effect` holding the lock: acquired first, the lease renewed from a supervised fiber while
   * it runs, released on success, failure and interruption. `effect` receives the lock ID (for
   * fenced `put`s).
   */
  readonly withLock: <A, E, R>(
    info: LockInfo.LockInfo,
    effect: (lockId: string) => Effect.Effect<A, E, R>
  ) => Effect.Effect<A, E | StoreError | LockConflict | LockLost, R>
  readonly versions: Effect.Effect<ReadonlyArray<VersionInfo>, StoreError>
  readonly getVersion: (version: number) => Effect.Effect<Option.Option<StatePayload>, StoreError | StateTooLarge>
  readonly restore: (
    version: number,
    options?: { readonly lockId?: string | undefined }
  ) => Effect.Effect<PutResult, StoreError | StateTooLarge | LockLost | InvalidReference>
  /** Root outputs of the current state (what `terraform_remote_state` gives). */
  readonly outputs: Effect.Effect<Option.Option<Readonly<Record<string, Output>>>, StoreError | StateTooLarge>
  readonly awaitRetention: Effect.Effect<void>
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Service {
  readonly repository: string
  /** Every workspace with state; `default` is always listed. */
  readonly workspaces: Effect.Effect<ReadonlyArray<string>, StoreError>
  /**
   * Remove a workspace: state, lock, released marker, lock candidates and version tags, matched
   * exactly. Refuses `default`, and a locked workspace unless `force`.
   */
  readonly deleteWorkspace: (
    name: string,
    options?: { readonly force?: boolean | undefined }
  ) => Effect.Effect<void, StoreError | InvalidReference | LockConflict>
  readonly stateManager: (name: string) => Effect.Effect<StateManager, InvalidReference>
  /** Wait until every pending retention run has finished. */
  readonly awaitRetention: Effect.Effect<void>
}

/**
 * @since 0.1.0
 * @category tags
 */
export class StateBackend extends Context.Tag("oras-state/StateBackend")<StateBackend, Service>() {}

/**
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** Repository path inside the registry, e.g. `org/infra-state`. */
  readonly repository: string
  readonly compression?: Compression | undefined
  /** Largest state accepted, decoded (default 256 MiB). */
  readonly maxStateSize?: number | undefined
  readonly versioning?: {
    readonly enabled: boolean
    /** Versions kept; 0 keeps all. */
    readonly maxVersions?: number | undefined
  } | undefined
  /** Lease of a lock; zero or absent: locks never expire. */
  readonly lockTtl?: Duration.DurationInput | undefined
  /** Parallel reads when resolving workspace names and versions (default 10). */
  readonly concurrency?: number | undefined
  /** Deletes a manifest on registries that answer 405 (the GitHub Packages adapter). */
  readonly deleteFallback?: ((tag: string, digest: Digest.Digest) => Effect.Effect<boolean, unknown>) | undefined
}

/**
 * @since 0.1.0
 * @category constants
 */
export const defaultMaxStateSize = 256 * 1024 * 1024

/**
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: Options): Effect.Effect<Service, InvalidReference, Registry | Scope.Scope> =>
  Effect.gen(function*() {
    const registry = yield* Registry
    const repository = options.repository
    const compression = options.compression ?? "none"
    const maxStateSize = options.maxStateSize === undefined || options.maxStateSize <= 0
      ? defaultMaxStateSize
      : options.maxStateSize
    const versioning = options.versioning?.enabled === true
    const maxVersions = versioning ? Math.max(0, Math.floor(options.versioning?.maxVersions ?? 0)) : 0
    const ttlMillis = options.lockTtl === undefined ? 0 : Duration.toMillis(options.lockTtl)
    const concurrency = Math.max(1, options.concurrency ?? 10)
    const retention = yield* FiberSet.make<void, never>()

    // The empty config blob is checked once per process (and repository); a failed check is
    // tried again next time rather than remembered.
    const ensureConfig = onceSuccessful(
      Effect.gen(function*() {
        const present = yield* registry.blobExists(repository, Digest.emptyJsonDigest)
        if (Option.isNone(present)) {
          yield* registry.putBlob(repository, { digest: Digest.emptyJsonDigest, size: 2 }, emptyConfigBytes)
        }
      })
    )

    // The span and the operations count of a state operation.
    const traced = (operation: string, ws: WorkspaceTags, extra: Record<string, unknown> = {}) =>
      stateOperation(`StateManager.${operation}`, operation, { ...stateAttributes(registry, repository, ws.name), ...extra })

    const holders = new Map<string, Holder>()
    const locks = makeLock({
      registry,
      repository,
      ensureConfig,
      ttlMillis,
      holders,
      deadCandidates: new Set(),
      maxRounds: 6,
      deleteFallback: Option.fromNullable(options.deleteFallback)
    })

    // What this process last saw of each workspace's state, and under which lock. A put under the
    // same lock uses it as parent and version base: nobody else can move the state meanwhile.
    const lastSeen = new Map<
      string,
      { readonly digest: Digest.Digest; readonly version: number | undefined; readonly lockId: string | undefined }
    >()
    const heldLockId = (ws: WorkspaceTags) => holders.get(ws.wsTag)?.lockId
    const retentionState = new Map<string, RetentionState>()
    const semaphoreOf = (map: Map<string, Effect.Semaphore>, key: string) => {
      let semaphore = map.get(key)
      if (semaphore === undefined) {
        semaphore = Effect.unsafeMakeSemaphore(1)
        map.set(key, semaphore)
      }
      return semaphore
    }
    // Writes of one workspace are serialized within the process, and so are its retention runs.
    const writeMutex = new Map<string, Effect.Semaphore>()
    const serialized = (ws: WorkspaceTags) => semaphoreOf(writeMutex, ws.wsTag).withPermits(1)
    const retentionMutex = new Map<string, Effect.Semaphore>()

    const readState = (ws: WorkspaceTags, reference: string) =>
      Effect.gen(function*() {
        const manifest = yield* registry.getManifest(repository, reference)
        if (Option.isNone(manifest)) return Option.none<{ digest: Digest.Digest; state: StateManifest }>()
        const state = yield* readStateManifest(manifest.value.bytes, manifest.value.digest)
        // The annotation proves which workspace a tag belongs to (hashed names can alias).
        if (state.workspace !== undefined && state.workspace !== ws.name) {
          return yield* new CorruptState({
            digest: manifest.value.digest,
            reason: `tag ${reference} holds workspace ${JSON.stringify(state.workspace)}, not ${JSON.stringify(ws.name)}`
          })
        }
        return Option.some({ digest: manifest.value.digest, state })
      })

    // A manifest without layers means "no state" (as ghoten reads it).
    const loadPayload = (found: { readonly digest: Digest.Digest; readonly state: StateManifest }) =>
      Effect.gen(function*() {
        const { digest, state } = found
        if (state.layer === undefined) return Option.none<StatePayload>()
        const layer = state.layer.descriptor
        if (state.layer.kind === "raw" && layer.size > maxStateSize) {
          return yield* new StateTooLarge({ size: layer.size, limit: maxStateSize })
        }
        if (state.layer.kind === "gzip") {
          // Refused before downloading: a recorded size over the limit, or a compressed size that
          // no state within the limit can have (deflate expands by at most ~0.03% plus headers).
          if (state.uncompressedSize !== undefined && state.uncompressedSize > maxStateSize) {
            return yield* new StateTooLarge({ size: state.uncompressedSize, limit: maxStateSize })
          }
          if (layer.size > maxGzipSize(maxStateSize)) return yield* new StateTooLarge({ limit: maxStateSize })
        }
        // A raw layer is the state itself: read into one buffer of its size, hashed as it arrives.
        const data = state.layer.kind === "raw"
          ? yield* registry.getBlobBytes(repository, { digest: layer.digest, size: layer.size })
          : yield* decodeState(registry.getBlob(repository, { digest: layer.digest, size: layer.size }), {
            maxSize: maxStateSize,
            sizeHint: state.uncompressedSize,
            digest: layer.digest
          })
        if (state.layer.kind === "gzip" && state.uncompressedSize !== undefined && state.uncompressedSize !== data.byteLength) {
          return yield* new CorruptState({ digest: layer.digest, reason: "decompressed size differs from the recorded one" })
        }
        yield* annotateBytes(data.byteLength)
        return Option.some<StatePayload>(withLazyMd5({ data, digest, version: state.version, updatedAt: state.updatedAt }))
      })

    // The highest version number among the version tags: numbers a state that carries no version
    // annotation (ghoten G2) or continues the history after the state itself was deleted.
    const highestVersionTag = (ws: WorkspaceTags) =>
      Effect.map(versionTags(ws), (tags) => tags.reduce((max, t) => Math.max(max, t.version), 0))

    const allTags = registry.listAllTags(repository)

    const versionTags = (ws: WorkspaceTags) => Effect.flatMap(allTags, (tags) => versionTagsIn(ws, tags))

    // The version tags of a workspace among `tags`, matched exactly: `stver-<wsTag>-v<N>`, and the
    // old `state-<wsTag>-v<N>` only when its workspace annotation proves it (it is also the state
    // tag of workspace `<name>-v<N>`). Only unreadable content is skipped; a failed request fails
    // the whole scan, so that a transient error never makes versions disappear (or numbering
    // restart, ghoten's `currentStateVersion` bug).
    const versionTagsIn = (ws: WorkspaceTags, tags: ReadonlyArray<string>) => {
      const modern = tags.flatMap((tag) => {
        const version = WireFormat.parseVersionTag(ws.wsTag, tag)
        return version === undefined ? [] : [{ tag, version, legacy: false }]
      })
      const legacy = tags.flatMap((tag) => {
        const version = WireFormat.parseLegacyVersionTag(ws.wsTag, tag)
        return version === undefined ? [] : [{ tag, version, legacy: true }]
      })
      return Effect.map(
        Effect.forEach(legacy, (candidate) =>
          readStateManifestOf(candidate.tag).pipe(
            Effect.catchTag("CorruptState", () => Effect.succeedNone),
            Effect.map((read) =>
              Option.isSome(read) && read.value.workspace === ws.name ? [candidate] : []
            )
          ), { concurrency }),
        (verified) => [...modern, ...verified.flat()]
      )
    }

    const readStateManifestOf = (tag: string) =>
      Effect.flatMap(registry.getManifest(repository, tag), (m) =>
        Option.isNone(m)
          ? Effect.succeedNone
          : Effect.map(readStateManifest(m.value.bytes, m.value.digest), (state) =>
            Option.some({ digest: m.value.digest, state, workspace: state.workspace })))

    const publishTag = (tag: string, bytes: Uint8Array, digest: Digest.Digest) =>
      registry.putManifest(repository, tag, { mediaType: MediaType.ociManifest, bytes }).pipe(
        // A lost response may have landed: look before deciding, never write twice blindly.
        Effect.catchTag("TransientRegistry", (error) =>
          Effect.flatMap(registry.resolveManifest(repository, tag), (resolved) =>
            Option.isSome(resolved) && resolved.value.digest === digest ? Effect.succeed(digest) : Effect.fail(error)))
      )

    const put = (ws: WorkspaceTags, data: Uint8Array, lockId: string | undefined) =>
      Effect.gen(function*() {
        if (data.byteLength > maxStateSize) {
          return yield* new StateTooLarge({ size: data.byteLength, limit: maxStateSize })
        }
        const base = Effect.gen(function*() {
          if (lockId !== undefined && lockId !== "") yield* locks.fence(ws, lockId)
          // Parent and version: from what this process saw under this very lock, else read now.
          const seen = lastSeen.get(ws.wsTag)
          const known = seen !== undefined && lockId !== undefined && seen.lockId === lockId && heldLockId(ws) === lockId
            ? Option.some(seen)
            : Option.none()
          const parent = Option.isSome(known)
            ? Option.some({ digest: known.value.digest, version: known.value.version })
            : Option.map(yield* readState(ws, ws.state), (found) => ({
              digest: found.digest,
              version: found.state.version
            }))
          // Without a current state, versions may still exist (the state was deleted): continue
          // their numbering rather than overwrite version 1.
          const parentVersion = Option.isNone(parent)
            ? (versioning ? yield* highestVersionTag(ws) : 0)
            : parent.value.version ?? (yield* highestVersionTag(ws))
          return { parent, version: parentVersion + 1 }
        })
        // The layer blob depends on none of the fence, the parent or the version: it is encoded
        // and uploaded while they are read (a round trip less), and nothing is published before
        // all of them are in. A failed fence interrupts the upload; an uploaded blob is harmless.
        // The upload session needs nothing of the state: it is opened at once, and the event
        // loop turns once so that it and the parent read are on the wire before the (CPU-bound)
        // hashing of a raw state, or while gzip compresses on the thread pool. The registry
        // answers both meanwhile; the blob is then sent to a session already open.
        const upload = Effect.gen(function*() {
          const session = yield* Effect.fork(registry.startBlobUpload(repository))
          const onTheWire = yield* RequestsOnTheWire
          yield* onTheWire
          const encoded = yield* encodeState(data, compression)
          yield* ensureConfig
          const opened = yield* Fiber.join(session)
          yield* opened.finish(encoded.descriptor, encoded.body)
          return encoded
        })
        const [{ parent, version }, encoded] = yield* Effect.all([base, upload], { concurrency: 2 })
        const now = yield* Clock.currentTimeMillis
        const bytes = encodeManifest({
          artifactType: WireFormat.ArtifactType.state,
          layers: [encoded.descriptor],
          annotations: {
            [WireFormat.Annotation.created]: WireFormat.createdTimestamp(now),
            [WireFormat.Annotation.updatedAt]: WireFormat.updatedAtTimestamp(now),
            [WireFormat.Annotation.workspace]: ws.name,
            [WireFormat.Annotation.version]: String(version),
            [WireFormat.Annotation.format]: WireFormat.formatRevision,
            ...(Option.isNone(parent) ? {} : { [WireFormat.Annotation.parent]: parent.value.digest })
          }
        })
        const digest = Digest.sha256(bytes)
        yield* publishTag(ws.state, bytes, digest)
        lastSeen.set(ws.wsTag, { digest, version, lockId: heldLockId(ws) })
        let versionTagged = false
        if (versioning) {
          const tagged = yield* Effect.either(publishTag(WireFormat.versionTag(ws.wsTag, version), bytes, digest))
          versionTagged = tagged._tag === "Right"
          if (tagged._tag === "Left") {
            yield* Effect.logWarning(`state landed but its version tag v${version} could not be written`, tagged.left)
          } else if (maxVersions > 0) {
            yield* FiberSet.run(retention, pruneVersions(ws, version, digest))
          }
        }
        return { digest, version, versionTagged }
      }).pipe(serialized(ws), traced("put", ws, { bytes: data.byteLength }))

    interface RetentionState {
      scanned: boolean
      lowWater: number
      /**
       * Tags still to prune once their version is under the threshold, other than the
       * `stver-<wsTag>-v<N>` the incremental path derives by itself: old-form tags found by the
       * scan, and tags whose pruning failed (retried with the next put).
       */
      readonly extra: Map<number, Set<string>>
      unsupported: boolean
    }

    const addTag = (map: Map<number, Set<string>>, version: number, tag: string) => {
      const tags = map.get(version)
      if (tags === undefined) map.set(version, new Set([tag]))
      else tags.add(tag)
    }

    // Retention for the newest version: delete versions ≤ newest - K. The first run per workspace
    // and process scans the tags (catching leftovers of crashed processes and old-form tags);
    // later runs only touch the versions that just expired and the ones that failed before:
    // O(pruned) requests. Runs of one workspace are serialized.
    const pruneVersions = (ws: WorkspaceTags, newest: number, newestDigest: Digest.Digest): Effect.Effect<void> =>
      Effect.gen(function*() {
        let state = retentionState.get(ws.wsTag)
        if (state === undefined) {
          state = { scanned: false, lowWater: 0, extra: new Map(), unsupported: false }
          retentionState.set(ws.wsTag, state)
        }
        const st = state
        if (st.unsupported) return
        const threshold = newest - maxVersions
        if (threshold < 1) return
        const candidates = new Map<number, Set<string>>()
        if (!st.scanned) {
          for (const t of yield* versionTags(ws)) {
            if (t.version <= threshold) addTag(candidates, t.version, t.tag)
            else if (t.legacy) addTag(st.extra, t.version, t.tag)
          }
          st.scanned = true
        } else {
          for (let v = st.lowWater + 1; v <= threshold; v++) addTag(candidates, v, WireFormat.versionTag(ws.wsTag, v))
        }
        for (const [version, tags] of st.extra) {
          if (version > threshold) continue
          for (const tag of tags) addTag(candidates, version, tag)
          st.extra.delete(version)
        }
        st.lowWater = Math.max(st.lowWater, threshold)
        const work = [...candidates].flatMap(([version, tags]) => [...tags].map((tag) => [version, tag] as const))
        yield* Effect.forEach(work, ([version, tag]) =>
          pruneTag(tag, newestDigest).pipe(
            Effect.catchAll((error) =>
              Effect.gen(function*() {
                // Without DELETE and without a fallback, retention cannot work: stop trying.
                if (error._tag === "Unsupported") st.unsupported = true
                else addTag(st.extra, version, tag)
                yield* Effect.logWarning(
                  error._tag === "Unsupported"
                    ? `retention of ${ws.name} stopped: the registry cannot delete manifests and no delete fallback is configured`
                    : `retention: version ${version} of ${ws.name} not pruned; retried with the next put`,
                  error
                )
              })
            )
          ), { concurrency: 4, discard: true })
      }).pipe(
        Effect.catchAll((error) => Effect.logWarning(`retention of ${ws.name} failed; retried with the next put`, error)),
        semaphoreOf(retentionMutex, ws.wsTag).withPermits(1),
        traced("retention", ws)
      )

    // Delete a version tag's manifest unless it is the current state.
    const pruneTag = (tag: string, keep: Digest.Digest) =>
      Effect.gen(function*() {
        const resolved = yield* registry.resolveManifest(repository, tag)
        if (Option.isNone(resolved) || resolved.value.digest === keep) return
        yield* deleteDigest(tag, resolved.value.digest)
      })

    // DELETE by digest; on registries that answer 405, the configured fallback (GitHub Packages
    // API). A failing fallback is a registry failure (retried later), not `Unsupported`.
    const deleteDigest = (tag: string, digest: Digest.Digest): Effect.Effect<void, RegistryFailure | Unsupported> =>
      registry.deleteManifest(repository, digest).pipe(
        Effect.asVoid,
        Effect.catchTag("Unsupported", (unsupported): Effect.Effect<void, RegistryFailure | Unsupported> => {
          const fallback = options.deleteFallback
          return fallback === undefined
            ? Effect.fail(unsupported)
            : fallback(tag, digest).pipe(
              Effect.mapError((cause: unknown) => fallbackFailure(cause)),
              Effect.asVoid
            )
        })
      )

    const stateManager = (name: string) =>
      Effect.map(validateWorkspace(name), (ws): StateManager => {
        const get = Effect.gen(function*() {
          const found = yield* readState(ws, ws.state)
          if (Option.isNone(found)) {
            lastSeen.delete(ws.wsTag)
            return Option.none<StatePayload>()
          }
          lastSeen.set(ws.wsTag, { digest: found.value.digest, version: found.value.state.version, lockId: heldLockId(ws) })
          return yield* loadPayload(found.value)
        }).pipe(traced("get", ws))

        const getVersion = (version: number) =>
          Effect.gen(function*() {
            if (!Number.isSafeInteger(version) || version < 1 || version > WireFormat.maxVersion) {
              return Option.none<StatePayload>()
            }
            const found = yield* readState(ws, WireFormat.versionTag(ws.wsTag, version))
            if (Option.isSome(found)) return yield* loadPayload(found.value)
            // The old form `state-<wsTag>-v<N>` is a version of ours only if its workspace
            // annotation says so: it may be the state of workspace `<name>-v<N>`.
            const legacy = yield* readStateManifestOf(WireFormat.legacyVersionTag(ws.wsTag, version)).pipe(
              Effect.catchTag("CorruptState", () => Effect.succeedNone)
            )
            if (Option.isSome(legacy) && legacy.value.state.workspace === ws.name) return yield* loadPayload(legacy.value)
            // The current state carries its number even if its version tag was never written.
            const current = yield* readState(ws, ws.state)
            if (Option.isSome(current) && current.value.state.version === version) return yield* loadPayload(current.value)
            return Option.none<StatePayload>()
          }).pipe(traced("getVersion", ws, { version }))

        const versions = Effect.gen(function*() {
          const tags = yield* versionTags(ws)
          const current = yield* readState(ws, ws.state)
          const byVersion = new Map<number, VersionInfo>()
          // Unreadable versions (or ones another workspace owns) are left out; a failed request
          // fails the listing rather than silently shortening it.
          const infos = yield* Effect.forEach(tags, (t) =>
            Effect.map(readState(ws, t.tag).pipe(Effect.catchTag("CorruptState", () => Effect.succeedNone)), (read) => {
              if (Option.isNone(read)) return undefined
              const { digest, state } = read.value
              return {
                // The tag's number: what `getVersion` looks up.
                version: t.version,
                digest,
                size: state.layer?.descriptor.size ?? 0,
                updatedAt: state.updatedAt,
                current: Option.isSome(current) && current.value.digest === digest
              }
            }), { concurrency })
          // `tags` lists the `stver-` form first: walking backwards, it wins over the old form.
          for (const info of [...infos].reverse()) if (info !== undefined) byVersion.set(info.version, info)
          if (Option.isSome(current) && current.value.state.version !== undefined && !byVersion.has(current.value.state.version)) {
            const { digest, state } = current.value
            byVersion.set(state.version!, {
              version: state.version!,
              digest,
              size: state.layer?.descriptor.size ?? 0,
              updatedAt: state.updatedAt,
              current: true
            })
          }
          return [...byVersion.values()].sort((a, b) => a.version - b.version)
        }).pipe(traced("versions", ws))

        const restore = (version: number, restoreOptions?: { readonly lockId?: string | undefined }) =>
          Effect.gen(function*() {
            const payload = yield* getVersion(version)
            if (Option.isNone(payload)) {
              return yield* new InvalidReference({ kind: "reference", value: `v${version}`, reason: `workspace ${JSON.stringify(ws.name)} has no such version` })
            }
            return yield* put(ws, payload.value.data, restoreOptions?.lockId)
          }).pipe(traced("restore", ws, { version }))

        const deleteState = Effect.gen(function*() {
          // Read strictly: the tag may hold another workspace whose name maps to the same tag.
          const current = yield* readState(ws, ws.state)
          if (Option.isNone(current)) return false
          const { digest, state } = current.value
          lastSeen.delete(ws.wsTag)
          // Untag where the registry can: the manifest may also be the current version.
          const untagged = yield* Effect.either(registry.deleteManifest(repository, ws.state))
          if (untagged._tag === "Right") return untagged.right
          if (untagged.left._tag !== "Unsupported") return yield* untagged.left
          // Deleting by digest removes every tag on it: first move the version tags that share the
          // digest (ours, or ghoten's old form) to a copy of the manifest marked detached, with
          // its annotations (`updated_at` included) unchanged, so history survives.
          const versionTagsToCheck = state.version !== undefined
            ? [
              WireFormat.versionTag(ws.wsTag, state.version),
              WireFormat.legacyVersionTag(ws.wsTag, state.version)
            ]
            : (yield* versionTags(ws)).map((t) => t.tag)
          const sharing = yield* Effect.filter(versionTagsToCheck, (tag) =>
            Effect.map(registry.resolveManifest(repository, tag), (r) =>
              Option.isSome(r) && r.value.digest === digest), { concurrency })
          if (sharing.length > 0) {
            const copy = encodeManifest({
              artifactType: state.manifest.artifactType ?? WireFormat.ArtifactType.state,
              layers: state.manifest.layers,
              annotations: { ...state.manifest.annotations, [WireFormat.Annotation.detached]: "true" }
            })
            const copyDigest = Digest.sha256(copy)
            for (const tag of sharing) yield* publishTag(tag, copy, copyDigest)
          }
          yield* deleteDigest(ws.state, digest)
          return true
        }).pipe(serialized(ws), traced("delete", ws))

        const lockInfo = Effect.map(locks.current(ws), Option.map((c) => ({
          info: c.record.info,
          expiresAt: c.record.expiresAt,
          ours: c.record.candidate !== undefined
        }))).pipe(traced("lockInfo", ws))

        const withLock = <A, E, R>(info: LockInfo.LockInfo, effect: (lockId: string) => Effect.Effect<A, E, R>) =>
          Effect.acquireUseRelease(
            locks.acquire(ws, info),
            (lockId) =>
              ttlMillis <= 0
                ? effect(lockId)
                : Effect.scoped(
                  Effect.gen(function*() {
                    // Renew at a third of the lease; a lost lease interrupts the work. A transient
                    // failure is retried (at most three times, a twelfth of the lease apart) while
                    // the lease still has time left, rather than abandoning the work at once.
                    const renewOnce = locks.renew(ws, lockId).pipe(
                      Effect.retry({
                        while: isTransientRegistry,
                        schedule: Schedule.spaced(Duration.millis(Math.max(1, Math.floor(ttlMillis / 12)))).pipe(
                          Schedule.intersect(Schedule.recurs(3))
                        )
                      })
                    )
                    const renewer = yield* Effect.forkScoped(
                      renewOnce.pipe(
                        Effect.delay(Duration.millis(Math.max(1, Math.floor(ttlMillis / 3)))),
                        Effect.forever
                      )
                    )
                    return yield* Effect.raceFirst(
                      effect(lockId),
                      Effect.flatMap(renewer.await, (exit) =>
                        Exit.isFailure(exit) ? Effect.failCause(exit.cause) : Effect.never)
                    )
                  })
                ),
            // A failed release must not hide the work's outcome, but it must not pass silently
            // either: transient failures are retried briefly, anything left is logged.
            (lockId) =>
              locks.release(ws, lockId).pipe(
                Effect.retry({
                  while: isTransientRegistry,
                  schedule: Schedule.exponential(Duration.millis(100)).pipe(Schedule.intersect(Schedule.recurs(3)))
                }),
                Effect.catchAll((error) =>
                  Effect.logWarning(`withLock: releasing lock ${lockId} of ${ws.name} failed; it stays until removed or expired`, error)
                )
              )
          ).pipe(traced("withLock", ws))

        return {
          workspace: ws.name,
          get,
          put: (data, putOptions) => put(ws, data, putOptions?.lockId),
          delete: deleteState,
          lock: (info) => locks.acquire(ws, info),
          unlock: (id) => locks.release(ws, id),
          forceUnlock: (expectedId) => locks.forceRelease(ws, expectedId),
          lockInfo,
          withLock,
          versions,
          getVersion,
          restore,
          outputs: Effect.flatMap(get, (payload) =>
            Option.isNone(payload)
              ? Effect.succeedNone
              : Effect.map(readOutputs(payload.value.data, payload.value.digest), Option.some)).pipe(traced("outputs", ws)),
          awaitRetention: FiberSet.awaitEmpty(retention)
        }
      })

    const workspaces = Effect.gen(function*() {
      const tags = yield* allTags
      // Tags no registry can hold (a hostile listing) are not ours to read.
      const stateTags = new Set(tags.filter((t) => t.startsWith("state-") && isValidTag(t)))
      const names = yield* Effect.forEach([...stateTags], (tag) =>
        Effect.gen(function*() {
          const wsTag = tag.slice("state-".length)
          const versionForm = /^(.*)-v([1-9][0-9]{0,9})$/.exec(wsTag)
          // A literal name is one only if it maps to exactly this tag (else it cannot be opened).
          if (!wsTag.startsWith("ws-") && versionForm === null) return WireFormat.workspaceTag(wsTag) === wsTag ? [wsTag] : []
          // Hashed names live in the annotation. `state-foo-v2` may be an old-form version of
          // `foo` (even an orphan one, after `foo`'s state was deleted) or the state of workspace
          // `foo-v2`: the annotation decides; without one, it is a version when `state-foo`
          // exists (ghoten's rule).
          const ambiguous = versionForm !== null && stateTags.has(`state-${versionForm[1]}`)
          const read = yield* readStateManifestOf(tag).pipe(
            Effect.map(Option.map((found) => found.workspace)),
            Effect.catchTag("CorruptState", () =>
              Effect.as(
                Effect.logWarning(`workspace listing: ${tag} is not a readable state manifest`),
                Option.some(undefined)
              ))
          )
          if (Option.isNone(read)) return []
          const workspace = read.value
          if (workspace === undefined) return ambiguous ? [] : [wsTag]
          return WireFormat.workspaceTag(workspace) === wsTag ? [workspace] : []
        }), { concurrency })
      return [...new Set([defaultWorkspace, ...names.flat()])].sort()
    }).pipe(stateOperation("StateBackend.workspaces", "workspaces", stateAttributes(registry, repository)))

    // The workspace a state or lock manifest names in its annotation, if it names one.
    const annotatedWorkspace = (bytes: Uint8Array, digest: string) =>
      Effect.map(Effect.option(parseManifest(bytes, digest)), (manifest) =>
        Option.flatMap(manifest, (m) =>
          Option.fromNullable(m.annotations?.[WireFormat.Annotation.workspace] ?? m.annotations?.[WireFormat.Annotation.legacyWorkspace])))

    const deleteWorkspace = (name: string, deleteOptions?: { readonly force?: boolean | undefined }) =>
      Effect.gen(function*() {
        const ws = yield* validateWorkspace(name)
        if (ws.name === defaultWorkspace) {
          return yield* new InvalidReference({ kind: "workspace", value: name, reason: "the default workspace cannot be deleted" })
        }
        const held = yield* locks.current(ws)
        if (Option.isSome(held) && deleteOptions?.force !== true) {
          return yield* new LockConflict({ workspace: ws.name, info: held.value.record.info })
        }
        const tags = yield* allTags
        // Exact matches only (never a prefix: deleting `foo` must not touch `foo-v2` or `foo-vbar`).
        const legacy = (yield* versionTagsIn(ws, tags)).filter((t) => t.legacy).map((t) => t.tag)
        const prefix = locks.candidatePrefix(ws)
        const candidates = tags.filter((t) => t.startsWith(prefix))
        const exact = tags.filter((t) => WireFormat.isWorkspaceTag(ws.wsTag, t))
        // A tag of ours by name may hold another workspace whose name maps to the same tag (a
        // literal `ws-…` name and a hashed one): its annotation proves ownership, or it is left alone.
        const owned = yield* Effect.forEach([...new Set([...exact, ...legacy])], (tag) =>
          Effect.gen(function*() {
            const manifest = yield* registry.getManifest(repository, tag)
            if (Option.isNone(manifest)) return []
            const owner = yield* annotatedWorkspace(manifest.value.bytes, manifest.value.digest)
            if (Option.isSome(owner) && owner.value !== ws.name) {
              yield* Effect.logWarning(`deleting workspace ${ws.name}: ${tag} belongs to workspace ${owner.value}; left alone`)
              return []
            }
            return [[tag, manifest.value.digest] as const]
          }), { concurrency })
        const lockCandidates = yield* Effect.forEach(candidates, (tag) =>
          Effect.map(registry.resolveManifest(repository, tag), (r) =>
            Option.isSome(r) ? [[tag, r.value.digest] as const] : []), { concurrency })
        const isLockTag = (tag: string) => tag === ws.lock || tag === ws.unlocked
        // State and versions first, the lock last: a failure midway leaves the workspace locked.
        // Each digest is deleted once (a digest delete removes all its tags).
        const phase = (entries: ReadonlyArray<readonly [string, Digest.Digest]>) => {
          const digests = new Map<Digest.Digest, string>()
          for (const [tag, digest] of entries) if (!digests.has(digest)) digests.set(digest, tag)
          return Effect.forEach(digests, ([digest, tag]) => deleteDigest(tag, digest), { concurrency: 4, discard: true })
        }
        const ownedEntries = owned.flat()
        yield* phase(ownedEntries.filter(([tag]) => !isLockTag(tag)))
        yield* phase([...ownedEntries.filter(([tag]) => isLockTag(tag)), ...lockCandidates.flat()])
        lastSeen.delete(ws.wsTag)
        retentionState.delete(ws.wsTag)
        // Holders are keyed by tag: forget ours only (not the one of a name aliasing this tag).
        if (holders.get(ws.wsTag)?.candidate.startsWith(prefix) === true) holders.delete(ws.wsTag)
      }).pipe(stateOperation("StateBackend.deleteWorkspace", "deleteWorkspace", stateAttributes(registry, repository, name)))

    return {
      repository,
      workspaces,
      deleteWorkspace,
      stateManager,
      awaitRetention: FiberSet.awaitEmpty(retention)
    } satisfies Service
  })

// An upper bound of the gzip size of any state within `limit` (zlib's deflateBound plus the gzip
// wrapper, rounded up generously): the gunzip input is buffered up to the layer size.
const maxGzipSize = (limit: number) => limit + Math.ceil(limit / 1024) + 1024

const registryFailureTags: ReadonlySet<string> = new Set([
  "TransientRegistry",
  "RegistryError",
  "Unauthorized",
  "InvalidReference",
  "CredentialsError"
])

const fallbackFailure = (cause: unknown): RegistryFailure =>
  isOrasStateError(cause) && registryFailureTags.has(cause._tag)
    ? cause as RegistryFailure
    : new RegistryError({
      operation: "deleteFallback",
      reason: isOrasStateError(cause) || cause instanceof Error ? cause.message : String(cause)
    })

// Runs `effect` until it succeeds once (one run at a time); afterwards it is a no-op.
const onceSuccessful = <E, R>(effect: Effect.Effect<void, E, R>): Effect.Effect<void, E, R> => {
  let done = false
  const semaphore = Effect.unsafeMakeSemaphore(1)
  return Effect.suspend(() =>
    done ? Effect.void : semaphore.withPermits(1)(
      Effect.suspend(() => (done ? Effect.void : Effect.tap(effect, () => Effect.sync(() => {
        done = true
      }))))
    )
  )
}

/**
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: Options): Layer.Layer<StateBackend, InvalidReference, Registry> =>
  Layer.scoped(StateBackend, make(options))

/**
 * The version number a version tag of `workspace` carries, if it is one (exact match).
 *
 * @since 0.1.0
 * @category utils
 */
export const parseVersionTag = (workspace: string, tag: string): number | undefined =>
  WireFormat.parseVersionTag(WireFormat.workspaceTag(workspace), tag)

