/**
 * `StateBackend` and `StateManager`: Terraform/OpenTofu state in an OCI repository, over any
 * `Registry` layer, wire-compatible with the OpenTofu "oras" backend (see `WireFormat`).
 *
 * - `get`: one manifest GET by tag and one blob GET; layer digest and size verified; artifact and
 *   media types checked strictly; gzip decoded streaming; `maxStateSize` enforced on the decoded
 *   size as it streams.
 * - `put`: refuses over-size state before uploading; blob POST+PUT and one manifest PUT by tag
 *   (plus the empty config blob once per process), the version tag when versioning is on, and one
 *   fence request when writing under a lock. A transient failure of the tag PUT is *observed*
 *   (resolved), never blindly re-sent. Every state manifest records its parent digest.
 * - Versions: numbered by the `org.terraform.state.version` annotation of the current state (a tag
 *   scan only when a legacy state lacks it); `restore(n)` rolls forward (a new version with the
 *   bytes of n). Retention (`maxVersions`) runs in supervised fibers owned by the backend's scope,
 *   costs O(pruned) requests after one tag scan per workspace and process, never fails a put that
 *   landed (it logs and retries with the next put), and `awaitRetention` waits for it.
 * - Locks: see `internal/state/lock.ts` for the protocol and its safety argument.
 *
 * @since 0.1.0
 */
import * as Chunk from "effect/Chunk"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as FiberSet from "effect/FiberSet"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as Digest from "./Digest.js"
import {
  CorruptState,
  type InconsistentRead,
  InvalidReference,
  LockConflict,
  type LockIdMismatch,
  type LockLost,
  type RegistryFailure,
  StateTooLarge,
  type Unsupported
} from "./Errors.js"
import { type Compression, decodeState, encodeState, md5 } from "./internal/state/content.js"
import { type Holder, makeLock } from "./internal/state/lock.js"
import {
  emptyConfigBytes,
  encodeManifest,
  readStateManifest,
  type StateManifest
} from "./internal/state/manifest.js"
import { type Output, readOutputs } from "./internal/state/outputs.js"
import { defaultWorkspace, validateWorkspace, type WorkspaceTags } from "./internal/state/workspace.js"
import type * as LockInfo from "./LockInfo.js"
import { MediaType, Registry } from "./Registry.js"
import * as WireFormat from "./WireFormat.js"

/**
 * @since 0.1.0
 * @category models
 */
export interface StatePayload {
  readonly data: Uint8Array
  /** MD5 of `data`, as OpenTofu's `remote.Payload` carries it. */
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
    const mutex = new Map<string, Effect.Semaphore>()
    const serialized = (ws: WorkspaceTags) => {
      let semaphore = mutex.get(ws.wsTag)
      if (semaphore === undefined) {
        semaphore = Effect.unsafeMakeSemaphore(1)
        mutex.set(ws.wsTag, semaphore)
      }
      return semaphore.withPermits(1)
    }

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

    const loadPayload = (found: { readonly digest: Digest.Digest; readonly state: StateManifest }) =>
      Effect.gen(function*() {
        const { digest, state } = found
        if (state.layer === undefined) {
          return { data: new Uint8Array(0), md5: md5(new Uint8Array(0)), digest, version: state.version, updatedAt: state.updatedAt }
        }
        const layer = state.layer.descriptor
        if (state.layer.kind === "raw" && layer.size > maxStateSize) {
          return yield* new StateTooLarge({ size: layer.size, limit: maxStateSize })
        }
        const data = yield* decodeState(
          registry.getBlob(repository, { digest: layer.digest, size: layer.size }),
          state.layer.kind,
          {
            maxSize: maxStateSize,
            sizeHint: state.layer.kind === "raw" ? layer.size : state.uncompressedSize,
            digest: layer.digest
          }
        )
        if (state.layer.kind === "gzip" && state.uncompressedSize !== undefined && state.uncompressedSize !== data.byteLength) {
          return yield* new CorruptState({ digest: layer.digest, reason: "decompressed size differs from the recorded one" })
        }
        return { data, md5: md5(data), digest, version: state.version, updatedAt: state.updatedAt }
      })

    // A legacy state (ghoten G2) carries no version annotation: the highest version tag numbers it.
    const legacyVersion = (ws: WorkspaceTags) =>
      Effect.map(versionTags(ws), (tags) => tags.reduce((max, t) => Math.max(max, t.version), 0))

    const versionTags = (ws: WorkspaceTags) =>
      registry.listTags(repository).pipe(
        Stream.runCollect,
        Effect.flatMap((chunk) => {
          const tags = Chunk.toArray(chunk)
          const modern = tags.flatMap((tag) => {
            const version = WireFormat.parseVersionTag(ws.wsTag, tag)
            return version === undefined ? [] : [{ tag, version, legacy: false }]
          })
          const legacy = tags.flatMap((tag) => {
            const version = WireFormat.parseLegacyVersionTag(ws.wsTag, tag)
            return version === undefined ? [] : [{ tag, version }]
          })
          // `state-<ws>-v<N>` is also the state tag of workspace `<ws>-v<N>`: only the workspace
          // annotation tells them apart.
          return Effect.map(
            Effect.forEach(legacy, (candidate) =>
              Effect.map(
                Effect.either(readStateManifestOf(candidate.tag)),
                (read) =>
                  read._tag === "Right" && Option.isSome(read.right) && read.right.value.workspace === ws.name
                    ? [{ ...candidate, legacy: true }]
                    : []
              ), { concurrency }),
            (verified) => [...modern, ...verified.flat()]
          )
        })
      )

    const readStateManifestOf = (tag: string) =>
      Effect.flatMap(registry.getManifest(repository, tag), (m) =>
        Option.isNone(m)
          ? Effect.succeedNone
          : Effect.map(readStateManifest(m.value.bytes, m.value.digest), Option.some))

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
        const parentVersion = Option.isNone(parent)
          ? 0
          : parent.value.version ?? (yield* legacyVersion(ws))
        const version = parentVersion + 1
        const encoded = yield* encodeState(data, compression)
        yield* ensureConfig
        yield* registry.putBlob(repository, encoded.descriptor, encoded.body)
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
      }).pipe(serialized(ws), Effect.withSpan("StateManager.put", { attributes: { workspace: ws.name, bytes: data.byteLength } }))

    interface RetentionState {
      scanned: boolean
      lowWater: number
      readonly pending: Set<number>
      unsupported: boolean
    }

    // Retention for the newest version: delete versions ≤ newest - K. The first run per workspace
    // and process scans the tags (catching leftovers of crashed processes); later runs only touch
    // the versions that just expired and the ones that failed before: O(pruned) requests.
    const pruneVersions = (ws: WorkspaceTags, newest: number, newestDigest: Digest.Digest): Effect.Effect<void> =>
      Effect.gen(function*() {
        let state = retentionState.get(ws.wsTag)
        if (state === undefined) {
          state = { scanned: false, lowWater: 0, pending: new Set(), unsupported: false }
          retentionState.set(ws.wsTag, state)
        }
        if (state.unsupported) return
        const threshold = newest - maxVersions
        if (threshold < 1) return
        const candidates = new Map<number, ReadonlyArray<string>>()
        const addCandidate = (version: number, tag: string) =>
          candidates.set(version, [...(candidates.get(version) ?? []), tag])
        if (!state.scanned) {
          for (const t of yield* versionTags(ws)) if (t.version <= threshold) addCandidate(t.version, t.tag)
          state.scanned = true
        } else {
          for (let v = state.lowWater + 1; v <= threshold; v++) addCandidate(v, WireFormat.versionTag(ws.wsTag, v))
          for (const v of state.pending) if (!candidates.has(v)) addCandidate(v, WireFormat.versionTag(ws.wsTag, v))
        }
        state.lowWater = Math.max(state.lowWater, threshold)
        const st = state
        yield* Effect.forEach(candidates, ([version, tags]) =>
          Effect.forEach(tags, (tag) => pruneTag(tag, newestDigest)).pipe(
            Effect.tap(() => Effect.sync(() => st.pending.delete(version))),
            Effect.catchAll((error) =>
              Effect.gen(function*() {
                if (error._tag === "Unsupported") st.unsupported = true
                else st.pending.add(version)
                yield* Effect.logWarning(`retention: version ${version} of ${ws.name} not pruned`, error)
              })
            )
          ), { concurrency: 4, discard: true })
      }).pipe(
        Effect.catchAll((error) => Effect.logWarning(`retention of ${ws.name} failed; retried with the next put`, error)),
        Effect.withSpan("StateManager.retention", { attributes: { workspace: ws.name } })
      )

    const pruneTag = (tag: string, keep: Digest.Digest) =>
      Effect.gen(function*() {
        const resolved = yield* registry.resolveManifest(repository, tag)
        if (Option.isNone(resolved) || resolved.value.digest === keep) return
        yield* deleteDigest(tag, resolved.value.digest)
      })

    const deleteDigest = (tag: string, digest: Digest.Digest) =>
      registry.deleteManifest(repository, digest).pipe(
        Effect.asVoid,
        Effect.catchTag("Unsupported", (unsupported) =>
          options.deleteFallback === undefined
            ? Effect.fail(unsupported)
            : Effect.asVoid(Effect.mapError(options.deleteFallback(tag, digest), () => unsupported)))
      )

    const stateManager = (name: string) =>
      Effect.map(validateWorkspace(name), (ws): StateManager => {
        const get = Effect.gen(function*() {
          const found = yield* readState(ws, ws.state)
          if (Option.isNone(found)) {
            lastSeen.delete(ws.wsTag)
            return Option.none<StatePayload>()
          }
          const payload = yield* loadPayload(found.value)
          lastSeen.set(ws.wsTag, { digest: found.value.digest, version: found.value.state.version, lockId: heldLockId(ws) })
          return Option.some(payload)
        }).pipe(Effect.withSpan("StateManager.get", { attributes: { workspace: ws.name } }))

        const getVersion = (version: number) =>
          Effect.gen(function*() {
            if (!Number.isSafeInteger(version) || version < 1) return Option.none<StatePayload>()
            for (const tag of [WireFormat.versionTag(ws.wsTag, version), WireFormat.legacyVersionTag(ws.wsTag, version)]) {
              const found = yield* Effect.either(readState(ws, tag))
              // A legacy tag owned by another workspace is not our version: skip it.
              if (found._tag === "Left") {
                if (tag.startsWith("state-")) continue
                return yield* found.left
              }
              if (Option.isSome(found.right)) return Option.some(yield* loadPayload(found.right.value))
            }
            // The current state carries its number even if its version tag was never written.
            const current = yield* readState(ws, ws.state)
            if (Option.isSome(current) && current.value.state.version === version) {
              return Option.some(yield* loadPayload(current.value))
            }
            return Option.none<StatePayload>()
          }).pipe(Effect.withSpan("StateManager.getVersion", { attributes: { workspace: ws.name, version } }))

        const versions = Effect.gen(function*() {
          const tags = yield* versionTags(ws)
          const current = yield* readState(ws, ws.state)
          const byVersion = new Map<number, VersionInfo>()
          const infos = yield* Effect.forEach(tags, (t) =>
            Effect.map(Effect.either(readState(ws, t.tag)), (read) => {
              if (read._tag === "Left" || Option.isNone(read.right)) return undefined
              const { digest, state } = read.right.value
              return {
                version: state.version ?? t.version,
                digest,
                size: state.layer?.descriptor.size ?? 0,
                updatedAt: state.updatedAt,
                current: Option.isSome(current) && current.value.digest === digest
              }
            }), { concurrency })
          for (const info of infos) if (info !== undefined) byVersion.set(info.version, info)
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
        }).pipe(Effect.withSpan("StateManager.versions", { attributes: { workspace: ws.name } }))

        const restore = (version: number, restoreOptions?: { readonly lockId?: string | undefined }) =>
          Effect.gen(function*() {
            const payload = yield* getVersion(version)
            if (Option.isNone(payload)) {
              return yield* new InvalidReference({ kind: "reference", value: `v${version}`, reason: `workspace ${JSON.stringify(ws.name)} has no such version` })
            }
            return yield* put(ws, payload.value.data, restoreOptions?.lockId)
          }).pipe(Effect.withSpan("StateManager.restore", { attributes: { workspace: ws.name, version } }))

        const deleteState = Effect.gen(function*() {
          const current = yield* registry.getManifest(repository, ws.state)
          if (Option.isNone(current)) return false
          const { bytes, digest } = current.value
          lastSeen.delete(ws.wsTag)
          // Untag where the registry can: the manifest may also be the current version.
          const untagged = yield* Effect.either(registry.deleteManifest(repository, ws.state))
          if (untagged._tag === "Right") return untagged.right
          if (untagged.left._tag !== "Unsupported") return yield* untagged.left
          // Deleting by digest removes every tag on it: first move a version tag that shares the
          // digest to a copy of the manifest (marked detached), so history survives.
          const state = yield* readStateManifest(bytes, digest)
          if (state.version !== undefined) {
            const versionTag = WireFormat.versionTag(ws.wsTag, state.version)
            const version = yield* registry.resolveManifest(repository, versionTag)
            if (Option.isSome(version) && version.value.digest === digest) {
              const copy = encodeManifest({
                artifactType: state.manifest.artifactType ?? WireFormat.ArtifactType.state,
                layers: state.manifest.layers,
                annotations: { ...state.manifest.annotations, [WireFormat.Annotation.detached]: "true" }
              })
              yield* publishTag(versionTag, copy, Digest.sha256(copy))
            }
          }
          yield* deleteDigest(ws.state, digest)
          return true
        }).pipe(serialized(ws), Effect.withSpan("StateManager.delete", { attributes: { workspace: ws.name } }))

        const lockInfo = Effect.map(locks.current(ws), Option.map((c) => ({
          info: c.record.info,
          expiresAt: c.record.expiresAt,
          ours: c.record.candidate !== undefined
        })))

        const withLock = <A, E, R>(info: LockInfo.LockInfo, effect: (lockId: string) => Effect.Effect<A, E, R>) =>
          Effect.acquireUseRelease(
            locks.acquire(ws, info),
            (lockId) =>
              ttlMillis <= 0
                ? effect(lockId)
                : Effect.scoped(
                  Effect.gen(function*() {
                    // Renew at a third of the lease; a lost lease interrupts the work.
                    const renewer = yield* Effect.forkScoped(
                      locks.renew(ws, lockId).pipe(
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
            (lockId) => Effect.ignore(locks.release(ws, lockId))
          ).pipe(Effect.withSpan("StateManager.withLock", { attributes: { workspace: ws.name } }))

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
              : Effect.map(readOutputs(payload.value.data, payload.value.digest), Option.some)),
          awaitRetention: FiberSet.awaitEmpty(retention)
        }
      })

    const workspaces = Effect.gen(function*() {
      const tags = Chunk.toArray(yield* Stream.runCollect(registry.listTags(repository)))
      const stateTags = new Set(tags.filter((t) => t.startsWith("state-")))
      const names = yield* Effect.forEach([...stateTags], (tag) =>
        Effect.gen(function*() {
          const wsTag = tag.slice("state-".length)
          const legacyVersion = /^(.*)-v([1-9][0-9]{0,9})$/.exec(wsTag)
          const ambiguous = legacyVersion !== null && stateTags.has(`state-${legacyVersion[1]}`)
          if (!wsTag.startsWith("ws-") && !ambiguous) return [wsTag]
          // Hashed names live in the annotation; `state-foo-v2` next to `state-foo` may be a
          // legacy version of foo or the state of workspace `foo-v2`: the annotation decides.
          const read = yield* Effect.either(readStateManifestOf(tag))
          if (read._tag === "Left") {
            if (read.left._tag === "CorruptState") {
              yield* Effect.logWarning(`workspace listing: ${tag} is not a readable state manifest`)
              return ambiguous ? [] : [wsTag]
            }
            return yield* read.left
          }
          if (Option.isNone(read.right)) return []
          const workspace = read.right.value.workspace
          if (workspace === undefined) return ambiguous ? [] : [wsTag]
          return WireFormat.workspaceTag(workspace) === wsTag ? [workspace] : []
        }), { concurrency })
      return [...new Set([defaultWorkspace, ...names.flat()])].sort()
    }).pipe(Effect.withSpan("StateBackend.workspaces"))

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
        const tags = Chunk.toArray(yield* Stream.runCollect(registry.listTags(repository)))
        const legacy = (yield* versionTags(ws)).filter((t) => t.legacy).map((t) => t.tag)
        const prefix = locks.candidatePrefix(ws)
        const owned = tags.filter((t) => WireFormat.isWorkspaceTag(ws.wsTag, t) || t.startsWith(prefix))
        const targets = [...new Set([...owned, ...legacy])]
        // Resolve first, then delete each digest once (a digest delete removes all its tags).
        const resolved = yield* Effect.forEach(targets, (tag) =>
          Effect.map(registry.resolveManifest(repository, tag), (r) => Option.map(r, (d) => [tag, d.digest] as const)), { concurrency })
        const digests = new Map<Digest.Digest, string>()
        for (const r of resolved) if (Option.isSome(r)) digests.set(r.value[1], r.value[0])
        yield* Effect.forEach(digests, ([digest, tag]) => deleteDigest(tag, digest), { concurrency: 4, discard: true })
        lastSeen.delete(ws.wsTag)
        holders.delete(ws.wsTag)
        retentionState.delete(ws.wsTag)
      }).pipe(Effect.withSpan("StateBackend.deleteWorkspace", { attributes: { workspace: name } }))

    return {
      repository,
      workspaces,
      deleteWorkspace,
      stateManager,
      awaitRetention: FiberSet.awaitEmpty(retention)
    } satisfies Service
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
