/**
 * The lock protocol: at most one holder among clients of this library, on any registry whose tag
 * listing and manifest reads are read-after-write consistent — without compare-and-swap, which no
 * registry offers on tags.
 *
 * ## Protocol (acquire)
 * 1. Write our own candidate: a lock manifest (LockInfo, lease expiry) at a tag nobody else will
 *    ever write, `lockc-<16 hex of sha256(workspace)>-<16 random hex>`.
 * 2. List the repository's tags and read `locked-<wsTag>` (both after step 1 completed).
 * 3. Any *other* live candidate of the workspace (present, and its lease not expired) means
 *    contention: withdraw (delete our candidate) and fail — with `LockConflict` naming the holder
 *    when the rival has published `locked-`, else back off with jitter and start again.
 *    Expired candidates are ignored (and removed by digest, which cannot touch a renewed lease).
 * 4. A live foreign lock at `locked-<wsTag>` (a ghoten client's) also means conflict: withdraw.
 * 5. Otherwise we hold the lock: publish our candidate's bytes at `locked-<wsTag>` so ghoten
 *    readers (and `lockInfo`) see the holder.
 *
 * ## Safety argument
 * Suppose A and B both hold. Each wrote its candidate (W) before listing (L), and each saw no
 * live rival, so A's listing did not show B's candidate and B's did not show A's. With
 * read-after-write consistent listing, L_A not seeing W_B means W_B completed after L_A began; and
 * W_A completed before L_A, hence before W_B, hence before L_B — so L_B shows A's candidate. A
 * candidate leaves only when its owner withdraws/releases (A holds, so it did not) or when a
 * contender finds its lease expired. Hence B saw A's live candidate and withdrew: contradiction,
 * unless A's lease expired — the TTL takeover, which is the point of a lease. A holder that did
 * not renew in time is *fenced*: every `put` first checks (locally) that the lease has a margin
 * left and (remotely) that our candidate is still ours, and fails with `LockLost` otherwise.
 * Both contenders may withdraw (livelock); jittered backoff makes that short-lived.
 *
 * ## Leases
 * With `lock_ttl`, a candidate carries its expiry; `renew` rewrites it (same tag, new expiry)
 * while the holder works. Contenders judge expiry with their own `Clock`; holders stop writing
 * `fenceMargin` before it, which is the clock-skew allowance.
 *
 * ## Registries without DELETE (405)
 * Withdrawal and release re-point our tags at the `unlocked-<wsTag>` marker, guarded by digest
 * (a tag is re-pointed only while it still points at our manifest). Dead candidates are
 * remembered per process so each is read once, and deleted through the GitHub Packages API when
 * one is configured.
 *
 * ## Request counts (uncontended)
 * acquire: candidate PUT, tag list, `locked-` GET, `locked-` PUT = 4.
 * release by the acquiring process: DELETE of the `locked-` copy, then of the candidate = 2; by
 * another process: `locked-` GET + the same two DELETEs = 3 (the candidate's digest follows from
 * the published copy's bytes).
 *
 * @internal
 */
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Random from "effect/Random"
import * as Crypto from "node:crypto"
import * as Digest from "../../Digest.js"
type Digest = Digest.Digest
import {
  CorruptState,
  InconsistentRead,
  LockConflict,
  LockIdMismatch,
  LockLost,
  type RegistryFailure,
  type Unsupported
} from "../../Errors.js"
import * as LockInfo from "../../LockInfo.js"
import { MediaType, type Service as RegistryService } from "../../Registry.js"
import * as WireFormat from "../../WireFormat.js"
import { recordLockHold, recordRetry, stateAttributes, stateOperation, timeLockWait } from "../telemetry.js"
import { candidateBytesOf, encodeLock, encodeUnlockedMarker, type LockRecord, readLock } from "./lockManifest.js"
import type { WorkspaceTags } from "./workspace.js"

/**
 * Where candidate IDs (16 hex characters) come from: the OS's CSPRNG, so that candidates of
 * concurrent processes never collide. Model checks replace it with a seeded generator to make
 * schedules reproducible.
 *
 * @internal
 */
export class CandidateIds extends Context.Reference<CandidateIds>()("oras-state/CandidateIds", {
  defaultValue: (): () => string => () => Crypto.randomBytes(8).toString("hex")
}) {}

/** A lock this process holds. @internal */
export interface Holder {
  readonly lockId: string
  readonly info: LockInfo.LockInfo
  readonly candidate: string
  /** Digest of our candidate manifest. */
  readonly digest: Digest
  /** Digest of the copy published at `locked-<wsTag>`. */
  readonly publishedDigest: Digest
  readonly expiresAt: number | undefined
  /** When this process acquired it (epoch ms, `Clock`), for the hold-time metric. */
  readonly acquiredAt: number
}

/** @internal */
export interface LockContext {
  readonly registry: RegistryService
  readonly repository: string
  /** The empty config blob must exist before any manifest referencing it. */
  readonly ensureConfig: Effect.Effect<void, RegistryFailure>
  /** Lease length in milliseconds; 0 = locks never expire. */
  readonly ttlMillis: number
  /** Locks held by this process, by workspace tag. */
  readonly holders: Map<string, Holder>
  /** Candidate tags known to point at the released marker (405 registries). */
  readonly deadCandidates: Set<string>
  /** Contention rounds before reporting a conflict with a mere contender. */
  readonly maxRounds: number
  /** Deletes a manifest where the registry answers 405 (GitHub Packages), if configured. */
  readonly deleteFallback: Option.Option<(tag: string, digest: Digest) => Effect.Effect<boolean, unknown>>
}

/** @internal */
export type LockFailure = RegistryFailure | CorruptState | Unsupported | InconsistentRead

/** The prefix of every candidate tag of a workspace. @internal */
export const candidatePrefix = (ws: WorkspaceTags): string => `lockc-${WireFormat.workspaceHash(ws.name)}-`

/** Stop writing this long before the lease ends (clock-skew allowance). @internal */
export const fenceMargin = (ttlMillis: number): number => Math.min(5_000, Math.floor(ttlMillis / 10))

/**
 * Whether a lock written by another client (ghoten, Terraform's copy) still counts. As ghoten
 * does, we only ever judge one stale when we run with a TTL ourselves: by its lease (G3+), or by
 * its age since `Created` (G1/G2).
 */
const isForeignLive = (record: LockRecord, now: number, ttlMillis: number): boolean => {
  if (record.info.ID === "") return false
  if (ttlMillis <= 0) return true
  if (record.expiresAt !== undefined) return now < record.expiresAt
  const created = Date.parse(record.info.Created)
  return Number.isNaN(created) || created <= 0 || now - created <= ttlMillis
}

const isLive = (record: LockRecord, now: number): boolean =>
  record.info.ID !== "" && (record.expiresAt === undefined || now < record.expiresAt)

type Attempt =
  | { readonly _tag: "Acquired"; readonly holder: Holder }
  | { readonly _tag: "Held"; readonly info: LockInfo.LockInfo; readonly rivals: number }
  | { readonly _tag: "Contended"; readonly info: LockInfo.LockInfo; readonly rivals: number }

/** @internal */
export const makeLock = (ctx: LockContext) => {
  const { registry, repository } = ctx
  const attributes = (ws: WorkspaceTags) => stateAttributes(registry, repository, ws.name)

  const readManifest = (reference: string) =>
    Effect.flatMap(registry.getManifest(repository, reference), (m) =>
      Option.isNone(m)
        ? Effect.succeed(Option.none<{ readonly digest: Digest; readonly bytes: Uint8Array; readonly record: LockRecord }>())
        : Effect.map(readLock(m.value.bytes, m.value.digest), (record) =>
          Option.some({ digest: m.value.digest, bytes: m.value.bytes, record })))

  // Remove a manifest we own (or that is provably dead) by digest; on registries without DELETE,
  // re-point `tags` that still point at it to the released marker.
  const retire = (ws: WorkspaceTags, digest: Digest, tags: ReadonlyArray<string>) =>
    registry.deleteManifest(repository, digest).pipe(
      Effect.asVoid,
      Effect.catchTag("Unsupported", () =>
        Effect.gen(function*() {
          const fallback = ctx.deleteFallback
          for (const tag of tags) {
            const current = yield* registry.resolveManifest(repository, tag)
            if (Option.isNone(current) || current.value.digest !== digest) continue
            if (Option.isSome(fallback) && tag.startsWith("lockc-")) {
              const deleted = yield* Effect.either(fallback.value(tag, digest))
              if (deleted._tag === "Right") continue
            }
            const marker = yield* unlockedMarker(ws)
            yield* registry.putManifest(repository, tag, { mediaType: MediaType.ociManifest, bytes: marker })
            if (tag.startsWith("lockc-")) ctx.deadCandidates.add(tag)
          }
        }))
    )

  const unlockedMarker = (ws: WorkspaceTags) =>
    Effect.gen(function*() {
      const existing = yield* registry.getManifest(repository, ws.unlocked)
      if (Option.isSome(existing)) return existing.value.bytes
      const bytes = encodeUnlockedMarker(ws.name, yield* Clock.currentTimeMillis)
      yield* ctx.ensureConfig
      yield* registry.putManifest(repository, ws.unlocked, { mediaType: MediaType.ociManifest, bytes })
      return bytes
    })

  const listCandidates = (ws: WorkspaceTags) =>
    Effect.map(
      registry.listAllTags(repository),
      (tags) => tags.filter((tag) => tag.startsWith(candidatePrefix(ws)) && !ctx.deadCandidates.has(tag))
    )

  // Candidates of ours whose withdrawal failed (a transient error after the candidate landed). They
  // hold nothing, so our own attempts ignore them; their removal is retried before every attempt
  // and release, so that a burst of failures does not leave them blocking everyone else.
  const orphans = new Map<string, { readonly wsTag: string; readonly digest: Digest }>()
  const withdraw = (ws: WorkspaceTags, digest: Digest, candidate: string) =>
    retire(ws, digest, [candidate]).pipe(
      Effect.tap(() => Effect.sync(() => orphans.delete(candidate))),
      Effect.catchAll(() => Effect.sync(() => orphans.set(candidate, { wsTag: ws.wsTag, digest })))
    )
  const retireOrphans = (ws: WorkspaceTags) =>
    Effect.forEach(
      [...orphans].filter(([, orphan]) => orphan.wsTag === ws.wsTag),
      ([candidate, orphan]) => withdraw(ws, orphan.digest, candidate),
      { discard: true }
    )

  // Rival candidates that are live, with their records; expired ones are retired on the way.
  const liveRivals = (ws: WorkspaceTags, rivals: ReadonlyArray<string>, now: number) =>
    Effect.forEach(rivals, (tag) =>
      Effect.gen(function*() {
        const found = yield* readManifest(tag).pipe(
          // An unreadable rival is treated as live: safety first.
          Effect.catchTag("CorruptState", () =>
            Effect.succeed(Option.some({
              digest: "" as Digest,
              bytes: new Uint8Array(0),
              record: { info: LockInfo.make({ ID: "unreadable" }), workspace: undefined, candidate: tag, expiresAt: undefined }
            })))
        )
        if (Option.isNone(found)) return Option.none()
        const { digest, record } = found.value
        if (record.info.ID === "") {
          ctx.deadCandidates.add(tag)
          return Option.none()
        }
        if (isLive(record, now)) return Option.some({ tag, digest, record })
        yield* Effect.ignore(retire(ws, digest, [tag]))
        return Option.none()
      }), { concurrency: 8 }).pipe(Effect.map((found) => found.flatMap((o) => (Option.isSome(o) ? [o.value] : []))))

  const attempt = (ws: WorkspaceTags, info: LockInfo.LockInfo): Effect.Effect<Attempt, LockFailure> =>
    Effect.gen(function*() {
      yield* ctx.ensureConfig
      yield* retireOrphans(ws)
      const now = yield* Clock.currentTimeMillis
      const expiresAt = ctx.ttlMillis > 0 ? now + ctx.ttlMillis : undefined
      const candidate = `${candidatePrefix(ws)}${(yield* CandidateIds)()}`
      const bytes = encodeLock({ workspace: ws.name, info, candidate, expiresAt, now })
      const digest = Digest.sha256(bytes)
      // From the first byte sent, any failure withdraws the candidate (which may have landed
      // even if its PUT reported an error), so it can never block others (if withdrawing fails,
      // it is retried with the next attempt).
      const withdrawn = withdraw(ws, digest, candidate)
      const outcome = yield* Effect.gen(function*() {
        // Reading `locked-` does not need to follow our write (it only finds ghoten holders and
        // names the holder), so it overlaps with it: the uncontended path is 3 round trips.
        const [, current] = yield* Effect.all([
          publish(candidate, bytes),
          readManifest(ws.lock).pipe(
            Effect.catchTag("CorruptState", (e) =>
              Effect.fail(new InconsistentRead({ workspace: ws.name, reason: `the lock cannot be read: ${e.reason}` })))
          )
        ], { concurrency: 2 })
        const foreign = Option.isSome(current) && current.value.record.candidate === undefined &&
          isForeignLive(current.value.record, yield* Clock.currentTimeMillis, ctx.ttlMillis)
        if (Option.isSome(current) && foreign) return { _tag: "Held", info: current.value.record.info, rivals: 0 } as const
        // The listing must follow our write: that order is what the safety argument rests on.
        // A listing that does not show our own candidate is stale (an eventually consistent
        // registry) and cannot prove the absence of rivals either: list again, keeping the
        // candidate (any later listing still follows our write), until it shows.
        let tags = yield* listCandidates(ws)
        for (let relist = 1; !tags.includes(candidate); relist++) {
          if (relist >= ctx.maxRounds) {
            return yield* new InconsistentRead({
              workspace: ws.name,
              reason: "the registry's tag listing does not show our own lock candidate (eventual consistency)"
            })
          }
          yield* Effect.sleep(Duration.millis(yield* Random.nextIntBetween(125, 250 * 2 ** Math.min(relist - 1, 5))))
          tags = yield* listCandidates(ws)
        }
        const checkedAt = yield* Clock.currentTimeMillis
        const rivals = yield* liveRivals(ws, tags.filter((t) => t !== candidate && !orphans.has(t)), checkedAt)
        if (rivals.length > 0) {
          const holder = Option.isSome(current)
            ? rivals.find((r) => r.tag === current.value.record.candidate)
            : undefined
          return holder !== undefined
            ? { _tag: "Held", info: holder.record.info, rivals: rivals.length } as const
            : { _tag: "Contended", info: rivals[0]!.record.info, rivals: rivals.length } as const
        }
        // A lock at `locked-` written by our protocol whose candidate is gone or expired is stale.
        // Our own candidate must still be live: if this attempt stalled past our lease, a rival
        // may have found it expired and removed it — we hold nothing then.
        if (expiresAt !== undefined && (yield* Clock.currentTimeMillis) >= expiresAt - fenceMargin(ctx.ttlMillis)) {
          return { _tag: "Contended", info, rivals: rivals.length } as const
        }
        const published = encodeLock({ workspace: ws.name, info, candidate, expiresAt, now, published: true })
        const publishedDigest = yield* publish(ws.lock, published)
        const acquiredAt = yield* Clock.currentTimeMillis
        return {
          _tag: "Acquired",
          holder: { lockId: info.ID, info, candidate, digest, publishedDigest, expiresAt, acquiredAt }
        } as const
      }).pipe(Effect.onError(() => withdrawn))
      if (outcome._tag !== "Acquired") yield* withdrawn
      return outcome
    })

  // PUT a manifest at a tag; a lost response is observed, never blindly re-sent.
  const publish = (tag: string, bytes: Uint8Array) =>
    registry.putManifest(repository, tag, { mediaType: MediaType.ociManifest, bytes }).pipe(
      Effect.catchTag("TransientRegistry", (error) =>
        Effect.flatMap(registry.resolveManifest(repository, tag), (resolved) =>
          Option.isSome(resolved) && resolved.value.digest === Digest.sha256(bytes)
            ? Effect.succeed(resolved.value.digest)
            : Effect.fail(error)))
    )

  const acquire = (ws: WorkspaceTags, requested: LockInfo.LockInfo) =>
    Effect.gen(function*() {
      const now = yield* Clock.currentTimeMillis
      const info: LockInfo.LockInfo = {
        ...requested,
        ID: requested.ID === "" ? Crypto.randomUUID() : requested.ID,
        // ghoten decodes Created as a Go time: anything but RFC 3339 would make our lock unreadable.
        Created: isRfc3339(requested.Created) ? requested.Created : new Date(now).toISOString(),
        Path: ws.state
      }
      const held = ctx.holders.get(ws.wsTag)
      if (held !== undefined && held.expiresAt !== undefined && now >= held.expiresAt) {
        // Our own lease ran out: whatever we held is gone (or up for takeover); forget it.
        ctx.holders.delete(ws.wsTag)
      } else if (held !== undefined) {
        // Idempotent retry by the holder (a lost LOCK response), else a conflict with ourselves.
        if (held.lockId === info.ID) return info.ID
        return yield* new LockConflict({ workspace: ws.name, info: held.info })
      }
      let retries = 0
      for (let round = 1;; round++) {
        const startedAt = yield* Clock.currentTimeMillis
        // An attempt uses a fresh candidate, so one that failed transiently can simply be made again.
        const outcome = yield* attempt(ws, info).pipe(
          Effect.catchTag("TransientRegistry", (error) =>
            round < ctx.maxRounds ? Effect.succeed({ _tag: "Retry" } as const) : Effect.fail(error))
        )
        switch (outcome._tag) {
          case "Retry":
            yield* Effect.sleep(Duration.millis(yield* Random.nextIntBetween(1, 25 * 2 ** Math.min(round, 6))))
            yield* recordRetry("lock", ++retries)
            break
          case "Acquired":
            ctx.holders.set(ws.wsTag, outcome.holder)
            return info.ID
          case "Held":
            return yield* new LockConflict({ workspace: ws.name, info: outcome.info })
          case "Contended": {
            if (round >= ctx.maxRounds) return yield* new LockConflict({ workspace: ws.name, info: outcome.info })
            // Contenders that saw each other all withdrew. Back off with full jitter over a window
            // that grows with the number of rivals and with how long an attempt takes here, so
            // that the next attempts rarely overlap (as in CSMA).
            const attemptMillis = Math.max(5, (yield* Clock.currentTimeMillis) - startedAt)
            const window = (outcome.rivals + 1) * attemptMillis * 2 ** Math.min(round - 1, 4)
            yield* Effect.sleep(Duration.millis(yield* Random.nextIntBetween(1, Math.max(2, Math.ceil(window)))))
          }
        }
      }
    }).pipe(timeLockWait, stateOperation("StateManager.lock", "lock", attributes(ws)))

  /** The current lock of a workspace, if live. */
  const current = (ws: WorkspaceTags) =>
    Effect.gen(function*() {
      const found = yield* readManifest(ws.lock).pipe(
        Effect.catchTag("CorruptState", (e) =>
          Effect.fail(new InconsistentRead({ workspace: ws.name, reason: `the lock cannot be read: ${e.reason}` })))
      )
      if (Option.isNone(found)) return Option.none<CurrentLock>()
      const { bytes, digest, record } = found.value
      const now = yield* Clock.currentTimeMillis
      if (!isLive(record, now)) return Option.none<CurrentLock>()
      if (record.candidate === undefined) return Option.some({ digest, bytes, record, candidateDigest: undefined })
      // Ours: live only while its candidate is (it may have been renewed since `locked-` was written).
      const candidate = yield* readManifest(record.candidate).pipe(Effect.catchTag("CorruptState", () => Effect.succeedNone))
      if (Option.isNone(candidate) || !isLive(candidate.value.record, now)) return Option.none<CurrentLock>()
      if (candidate.value.record.info.ID !== record.info.ID) return Option.none<CurrentLock>()
      return Option.some({ digest, bytes, record: candidate.value.record, candidateDigest: candidate.value.digest })
    })

  const release = (ws: WorkspaceTags, lockId: string) =>
    Effect.gen(function*() {
      const held = ctx.holders.get(ws.wsTag)
      if (held !== undefined) {
        if (held.lockId !== lockId) {
          return yield* new LockIdMismatch({ workspace: ws.name, given: lockId, held: held.lockId })
        }
        // `locked-` first: a successor can only publish after our candidate is gone, so our
        // delete of `locked-` never races with its write.
        yield* retire(ws, held.publishedDigest, [ws.lock])
        yield* retire(ws, held.digest, [held.candidate])
        ctx.holders.delete(ws.wsTag)
        yield* retireOrphans(ws)
        yield* recordLockHold(held.acquiredAt)
        return
      }
      // Released by another process (Terraform's UNLOCK can reach another server): read `locked-`.
      const found = yield* readManifest(ws.lock).pipe(
        Effect.catchTag("CorruptState", (e) =>
          Effect.fail(new InconsistentRead({ workspace: ws.name, reason: `the lock cannot be read: ${e.reason}` })))
      )
      // Releasing a lock that is no longer held is a success: retries of a lost UNLOCK land here.
      if (Option.isNone(found) || found.value.record.info.ID === "") return
      const { bytes, digest, record } = found.value
      if (record.info.ID !== lockId) {
        return yield* new LockIdMismatch({ workspace: ws.name, given: lockId, held: record.info.ID })
      }
      yield* removeLock(ws, digest, bytes, record)
    }).pipe(stateOperation("StateManager.unlock", "unlock", attributes(ws)))

  // Remove the lock published at `locked-` (digest, bytes) and its candidate.
  const removeLock = (ws: WorkspaceTags, digest: Digest, bytes: Uint8Array, record: LockRecord) =>
    Effect.gen(function*() {
      yield* retire(ws, digest, [ws.lock])
      if (record.candidate === undefined) return
      // The candidate's digest follows from the published copy; if the candidate was renewed since
      // (another digest), find it by tag — but only remove it if it is the same lock.
      const candidateBytes = candidateBytesOf(bytes)
      if (candidateBytes !== undefined) {
        const removed = yield* registry.deleteManifest(repository, Digest.sha256(candidateBytes)).pipe(
          Effect.catchTag("Unsupported", () => Effect.as(retire(ws, Digest.sha256(candidateBytes), [record.candidate!]), true))
        )
        if (removed) return
      }
      const candidate = yield* readManifest(record.candidate).pipe(Effect.catchTag("CorruptState", () => Effect.succeedNone))
      if (Option.isSome(candidate) && candidate.value.record.info.ID === record.info.ID) {
        yield* retire(ws, candidate.value.digest, [record.candidate])
      }
    })

  /** Remove whatever lock is held, reporting whom it removed. */
  const forceRelease = (ws: WorkspaceTags, expectedId: string | undefined) =>
    Effect.gen(function*() {
      const wanted = expectedId === undefined || expectedId === "" ? undefined : expectedId
      const found = yield* current(ws)
      let removed = Option.none<LockInfo.LockInfo>()
      if (Option.isSome(found)) {
        const { bytes, candidateDigest, digest, record } = found.value
        if (wanted !== undefined && record.info.ID !== wanted) {
          return yield* new LockIdMismatch({ workspace: ws.name, given: wanted, held: record.info.ID })
        }
        yield* removeLock(ws, digest, bytes, record)
        if (candidateDigest !== undefined && record.candidate !== undefined) {
          // The candidate we saw live (maybe renewed since `locked-` was written): remove it too.
          yield* retire(ws, candidateDigest, [record.candidate])
        }
        removed = Option.some(record.info)
      }
      // Candidates that block without a published lock: a contender that crashed between its
      // write and its withdrawal, or whose withdrawal failed. Contenders report them in
      // LockConflict, so force-unlock by that ID (or an empty force-unlock) must reach them too.
      const now = yield* Clock.currentTimeMillis
      const live = yield* liveRivals(ws, yield* listCandidates(ws), now)
      const stranded = live.filter((c) => wanted === undefined || c.record.info.ID === wanted)
      if (Option.isNone(removed) && stranded.length === 0 && wanted !== undefined && live.length > 0) {
        return yield* new LockIdMismatch({ workspace: ws.name, given: wanted, held: live[0]!.record.info.ID })
      }
      for (const candidate of stranded) {
        if (candidate.digest !== "") yield* retire(ws, candidate.digest, [candidate.tag])
        if (Option.isNone(removed)) removed = Option.some(candidate.record.info)
      }
      const held = ctx.holders.get(ws.wsTag)
      if (held !== undefined && Option.isSome(removed) && held.lockId === removed.value.ID) {
        ctx.holders.delete(ws.wsTag)
        yield* recordLockHold(held.acquiredAt)
      }
      return removed
    }).pipe(stateOperation("StateManager.forceUnlock", "forceUnlock", attributes(ws)))

  /**
   * Fencing, before a state write under `lockId`: the lease must have `fenceMargin` left (judged
   * locally) and our candidate must still be ours (one request).
   */
  const fence = (ws: WorkspaceTags, lockId: string) =>
    Effect.gen(function*() {
      const now = yield* Clock.currentTimeMillis
      const lost = (reason: string) => Effect.fail(new LockLost({ workspace: ws.name, lockId, reason }))
      const held = ctx.holders.get(ws.wsTag)
      if (held !== undefined && held.lockId === lockId) {
        if (held.expiresAt !== undefined && now >= held.expiresAt - fenceMargin(ctx.ttlMillis)) {
          if (now >= held.expiresAt) ctx.holders.delete(ws.wsTag)
          return yield* lost("the lease expired")
        }
        const resolved = yield* registry.resolveManifest(repository, held.candidate)
        if (Option.isNone(resolved) || resolved.value.digest !== held.digest) {
          ctx.holders.delete(ws.wsTag)
          return yield* lost("the lock was removed or taken over")
        }
        return
      }
      // Locked by another process of ours (e.g. a server restarted, or one replica of several).
      const found = yield* current(ws)
      if (Option.isNone(found)) return yield* lost("the workspace is not locked")
      const { record } = found.value
      if (record.info.ID !== lockId) return yield* lost(`the workspace is locked by ${record.info.ID}`)
      if (record.expiresAt !== undefined && now >= record.expiresAt - fenceMargin(ctx.ttlMillis)) {
        return yield* lost("the lease expired")
      }
    })

  /** Extend the lease of a lock this process holds. */
  const renew = (ws: WorkspaceTags, lockId: string) =>
    Effect.gen(function*() {
      const held = ctx.holders.get(ws.wsTag)
      if (held === undefined || held.lockId !== lockId) {
        return yield* new LockLost({ workspace: ws.name, lockId, reason: "this process does not hold the lock" })
      }
      const now = yield* Clock.currentTimeMillis
      if (held.expiresAt !== undefined && now >= held.expiresAt) {
        ctx.holders.delete(ws.wsTag)
        return yield* new LockLost({ workspace: ws.name, lockId, reason: "the lease expired before it was renewed" })
      }
      // Never resurrect a lock that was force-unlocked: our candidate must still be ours.
      const resolved = yield* registry.resolveManifest(repository, held.candidate)
      if (Option.isNone(resolved) || resolved.value.digest !== held.digest) {
        ctx.holders.delete(ws.wsTag)
        return yield* new LockLost({ workspace: ws.name, lockId, reason: "the lock was removed or taken over" })
      }
      const expiresAt = now + ctx.ttlMillis
      // `Created` moves with the lease: ghoten G1/G2 clients judge staleness by its age.
      const info = { ...held.info, Created: new Date(now).toISOString() }
      const lease = { workspace: ws.name, info, candidate: held.candidate, expiresAt, now }
      const digest = yield* publish(held.candidate, encodeLock(lease))
      ctx.holders.set(ws.wsTag, { ...held, info, digest, expiresAt })
      // Refresh the published copy only while it is still ours (never overwrite a successor's).
      const published = yield* registry.resolveManifest(repository, ws.lock)
      if (Option.isSome(published) && published.value.digest === held.publishedDigest) {
        const publishedDigest = yield* publish(ws.lock, encodeLock({ ...lease, published: true }))
        ctx.holders.set(ws.wsTag, { ...held, info, digest, expiresAt, publishedDigest })
        yield* Effect.ignore(registry.deleteManifest(repository, held.publishedDigest))
      }
      // The superseded lease manifests are garbage now (no tag points at them any more).
      yield* Effect.ignore(registry.deleteManifest(repository, held.digest))
    }).pipe(stateOperation("StateManager.renewLease", "renewLease", attributes(ws)))

  return { acquire, release, forceRelease, current, fence, renew, candidatePrefix } as const
}

const isRfc3339 = (value: string): boolean =>
  /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$/.test(value) && !Number.isNaN(Date.parse(value))

/** @internal */
export interface CurrentLock {
  readonly digest: Digest
  readonly bytes: Uint8Array
  readonly record: LockRecord
  readonly candidateDigest: Digest | undefined
}

