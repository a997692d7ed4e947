/**
 * A lock file serialising the read-modify-write of one `index.json` across processes.
 *
 * Protocol (every participant follows it; readers take no lock — `index.json` is only ever
 * replaced by rename, so any read sees a whole file):
 * 1. Acquire: write `{pid, hostname, token, acquiredAt}` to a temp file and `link(2)` it to the
 *    lock path. `link` never overwrites, so exactly one contender wins, and the lock file is
 *    complete from the moment it exists (no half-written lock to misjudge).
 * 2. Busy: read the holder. It is stale when it runs on this host and its PID is gone
 *    (`kill(pid, 0)` → ESRCH: crashed or killed), or when it is older than `staleAfter` (a hung
 *    holder, or one on another host sharing the directory). A stale lock is moved aside by
 *    `rename` to a unique name, and removed only if what was moved is byte-identical to what was
 *    judged stale; otherwise (another contender broke it and a new holder took it meanwhile) it
 *    is linked back. Then retry. Contenders back off exponentially (jittered, capped) up to a
 *    total timeout.
 * 3. Before committing `index.json`, the holder checks the lock still carries its token, so a
 *    holder that was judged stale (it stalled beyond `staleAfter`) does not overwrite a newer
 *    holder's work: its write fails instead. Only a stall between that check and the rename
 *    (microseconds) could still interleave.
 * 4. Release: remove the lock file if it still carries our token.
 *
 * Time comes from `Clock` (the holder's `acquiredAt` and the age check), which is wall-clock time
 * in production; processes sharing a store must share a clock (one machine).
 *
 * @internal
 */
import { randomUUID } from "node:crypto"
import * as NodeOs from "node:os"
import * as Clock from "effect/Clock"
import * as Data from "effect/Data"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import * as Fs from "./fs.js"

/** @internal */
export interface Holder {
  readonly pid: number
  readonly hostname: string
  readonly token: string
  readonly acquiredAt: number
}

/** The lock is held by someone else (after the timeout: still held). @internal */
export class LockBusy extends Data.TaggedError("LockBusy")<{
  readonly path: string
  readonly holder: Holder | undefined
}> {}

/** Our lock was broken as stale by another process; nothing was committed. @internal */
export class LockLost extends Data.TaggedError("LockLost")<{
  readonly path: string
}> {}

/** @internal */
export interface LockOptions {
  readonly staleAfter: Duration.Duration
  readonly timeout: Duration.Duration
}

/** A held lock. @internal */
export interface Held {
  readonly path: string
  readonly token: string
  /** Fails with `LockLost` unless the lock file still carries our token. */
  readonly verify: Effect.Effect<void, LockLost | Fs.FsError>
}

const hostname = NodeOs.hostname()
const encoder = new TextEncoder()
const maxLockBytes = 64 * 1024

const parseHolder = (bytes: Uint8Array): Holder | undefined => {
  try {
    const json: unknown = JSON.parse(new TextDecoder().decode(bytes))
    if (typeof json !== "object" || json === null) return undefined
    const h = json as Record<string, unknown>
    return typeof h["pid"] === "number" && typeof h["hostname"] === "string" && typeof h["token"] === "string" &&
        typeof h["acquiredAt"] === "number"
      ? { pid: h["pid"], hostname: h["hostname"], token: h["token"], acquiredAt: h["acquiredAt"] }
      : undefined
  } catch {
    return undefined
  }
}

/** The raw lock file (to compare) and its holder (undefined when unreadable), if it exists. */
const readLock = (path: string) =>
  Fs.readBounded(path, maxLockBytes).pipe(
    Effect.map(Option.map((r) => {
      const bytes = "bytes" in r ? r.bytes : new Uint8Array(0)
      return { bytes, holder: parseHolder(bytes) }
    }))
  )

const sameBytes = (a: Uint8Array, b: Uint8Array) => a.byteLength === b.byteLength && a.every((x, i) => x === b[i])

const isStale = (path: string, holder: Holder | undefined, staleAfterMillis: number) =>
  Effect.gen(function*() {
    const now = yield* Clock.currentTimeMillis
    if (holder === undefined) {
      // Not written by this protocol (or damaged): judge by its age alone.
      const info = yield* Fs.stat(path)
      return Option.match(info, { onNone: () => false, onSome: (s) => now - s.mtimeMs > staleAfterMillis })
    }
    if (holder.hostname === hostname && !(yield* Fs.processAlive(holder.pid))) return true
    return now - holder.acquiredAt > staleAfterMillis
  })

// Move the judged lock aside; remove it only if it is the one we judged, else put it back.
const breakStale = (path: string, judged: Uint8Array) =>
  Effect.gen(function*() {
    const aside = `${path}.${randomUUID()}.stale`
    const moved = yield* Fs.rename(path, aside).pipe(
      Effect.as(true),
      Effect.catchIf((e) => e.code === "ENOENT", () => Effect.succeed(false))
    )
    if (!moved) return
    const current = yield* readLock(aside)
    if (Option.isSome(current) && !sameBytes(current.value.bytes, judged)) {
      yield* Effect.logWarning(`lock ${path} changed while being broken as stale; restoring it`)
      yield* Fs.link(aside, path)
    } else {
      yield* Effect.logWarning(
        `broke stale lock ${path}${
          Option.isSome(current) && current.value.holder !== undefined
            ? ` held by pid ${current.value.holder.pid} on ${current.value.holder.hostname}`
            : ""
        }`
      )
    }
    yield* Fs.unlink(aside)
  })

const tryAcquire = (path: string, staleAfterMillis: number): Effect.Effect<Held, LockBusy | Fs.FsError> =>
  Effect.gen(function*() {
    const holder: Holder = {
      pid: process.pid,
      hostname,
      token: randomUUID(),
      acquiredAt: yield* Clock.currentTimeMillis
    }
    const created = yield* Fs.writeAtomic(path, [encoder.encode(JSON.stringify(holder))], {
      durable: false,
      mode: "create"
    })
    if (created) {
      return {
        path,
        token: holder.token,
        verify: readLock(path).pipe(
          Effect.flatMap((current) =>
            Option.isSome(current) && current.value.holder?.token === holder.token
              ? Effect.void
              : Effect.fail(new LockLost({ path }))
          )
        )
      }
    }
    const current = yield* readLock(path)
    if (Option.isNone(current)) return yield* new LockBusy({ path, holder: undefined }) // just released
    if (yield* isStale(path, current.value.holder, staleAfterMillis)) yield* breakStale(path, current.value.bytes)
    return yield* new LockBusy({ path, holder: current.value.holder })
  })

/** @internal */
export const release = (held: Held): Effect.Effect<void> =>
  readLock(held.path).pipe(
    Effect.flatMap((current) =>
      Option.isSome(current) && current.value.holder?.token === held.token ? Fs.unlink(held.path) : Effect.void
    ),
    Effect.catchAll((e) => Effect.logWarning(`could not release lock ${held.path}: ${Fs.describe(e)}`))
  )

const retrySchedule = (timeout: Duration.Duration) =>
  Schedule.exponential(Duration.millis(2), 1.5).pipe(
    Schedule.modifyDelay((_, d) => Duration.min(d, Duration.millis(50))),
    Schedule.jittered,
    Schedule.upTo(timeout)
  )

/**
 * Run `use` while holding the lock at `path`, released afterwards whatever happens.
 *
 * Waiting for the lock (backoff while busy, breaking it when stale, up to `timeout`) can be
 * interrupted; each attempt, and `use` itself, cannot: `node:fs` calls cannot be cancelled, so an
 * interrupted write could otherwise still land after the lock was released — after another writer
 * read `index.json` — and undo its update. The critical section is a handful of bounded file
 * operations.
 *
 * @internal
 */
export const withLock = <A, E, R>(
  path: string,
  options: LockOptions,
  use: (held: Held) => Effect.Effect<A, E, R>
): Effect.Effect<A, E | LockBusy | Fs.FsError, R> =>
  Effect.uninterruptibleMask((restore) => {
    let acquired: Held | undefined
    const attempt = tryAcquire(path, Duration.toMillis(options.staleAfter)).pipe(
      Effect.tap((held) =>
        Effect.sync(() => {
          acquired = held
        })
      ),
      Effect.uninterruptible
    )
    const waitForLock = restore(
      Effect.retry(attempt, { schedule: retrySchedule(options.timeout), while: (e) => e._tag === "LockBusy" })
    ).pipe(
      // Interrupted just after an attempt succeeded: give the lock back.
      Effect.onExit((exit) => (exit._tag === "Failure" && acquired !== undefined ? release(acquired) : Effect.void))
    )
    return Effect.flatMap(waitForLock, (held) => Effect.ensuring(use(held), release(held)))
  })
