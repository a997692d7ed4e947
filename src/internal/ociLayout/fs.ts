/**
 * Effect wrappers over `node:fs/promises` for the OCI-layout store: every failure keeps its errno
 * code (ENOSPC, EACCES, EROFS, …) so that it can be reported precisely, and files are replaced
 * atomically (temp file in the same directory, fsync, rename, fsync of the directory).
 *
 * Plain `node:fs` rather than `@effect/platform`'s `FileSystem`: the latter folds errno codes into
 * a handful of reasons (ENOSPC becomes "Unknown") and cannot fsync a directory or create a file
 * with `link(2)` (atomic create-if-absent with complete content).
 *
 * @internal
 */
import { randomUUID } from "node:crypto"
import * as NodeFs from "node:fs/promises"
import * as NodePath from "node:path"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Digest from "../../Digest.js"

/**
 * A failed filesystem call, with its errno code (`"UNKNOWN"` when the error carried none).
 *
 * @internal
 */
export class FsError extends Data.TaggedError("FsError")<{
  readonly syscall: string
  readonly path: string
  readonly code: string
  readonly detail: string
}> {}

const errnoCode = (cause: unknown): string =>
  typeof cause === "object" && cause !== null && "code" in cause && typeof cause.code === "string"
    ? cause.code
    : "UNKNOWN"

/** @internal */
export const attempt = <A>(syscall: string, path: string, f: () => Promise<A>): Effect.Effect<A, FsError> =>
  Effect.tryPromise({
    try: f,
    catch: (cause) =>
      new FsError({
        syscall,
        path,
        code: errnoCode(cause),
        detail: cause instanceof Error ? cause.message : String(cause)
      })
  })

const isCode = (...codes: ReadonlyArray<string>) => (e: FsError): boolean => codes.includes(e.code)

/** `Option.none()` when the path (or a directory on it) does not exist. @internal */
export const stat = (path: string) =>
  attempt("stat", path, () => NodeFs.stat(path)).pipe(
    Effect.map(Option.some),
    Effect.catchIf(isCode("ENOENT", "ENOTDIR"), () => Effect.succeedNone)
  )

/** @internal */
export const mkdirp = (path: string): Effect.Effect<void, FsError> =>
  Effect.asVoid(attempt("mkdir", path, () => NodeFs.mkdir(path, { recursive: true })))

/** `true` when removed, `false` when it was not there. @internal */
export const unlink = (path: string): Effect.Effect<boolean, FsError> =>
  attempt("unlink", path, () => NodeFs.unlink(path)).pipe(
    Effect.as(true),
    Effect.catchIf(isCode("ENOENT"), () => Effect.succeed(false))
  )

/** @internal */
export const rename = (from: string, to: string): Effect.Effect<void, FsError> =>
  attempt("rename", to, () => NodeFs.rename(from, to))

/** Create `to` as another name of `from`; `false` when `to` already exists (never overwritten). @internal */
export const link = (from: string, to: string): Effect.Effect<boolean, FsError> =>
  attempt("link", to, () => NodeFs.link(from, to)).pipe(
    Effect.as(true),
    Effect.catchIf(isCode("EEXIST"), () => Effect.succeed(false))
  )

/** Best-effort removal of a temp file on a failure path (its own failure would hide the first one). */
const discard = (path: string): Effect.Effect<void> =>
  Effect.promise(() => NodeFs.unlink(path).catch(() => undefined))

/** Closing never fails the operation: the data was synced (or not asked to be) before. */
const close = (handle: NodeFs.FileHandle): Effect.Effect<void> =>
  Effect.promise(() => handle.close().catch(() => undefined))

/** An open file handle tied to the current scope. @internal */
export const open = (path: string, flags: string, mode?: number) =>
  Effect.acquireRelease(attempt("open", path, () => NodeFs.open(path, flags, mode)), close)

/**
 * The whole file, when it exists and is at most `maxBytes` long. `tooLarge` carries the size of a
 * larger one, which is not read.
 *
 * @internal
 */
export const readBounded = (
  path: string,
  maxBytes: number
): Effect.Effect<Option.Option<{ readonly bytes: Uint8Array } | { readonly tooLarge: number }>, FsError> =>
  Effect.scoped(
    Effect.gen(function*() {
      const handle = yield* open(path, "r")
      const info = yield* attempt("fstat", path, () => handle.stat())
      if (info.size > maxBytes) return Option.some({ tooLarge: info.size })
      const bytes = yield* attempt("read", path, () => handle.readFile())
      if (bytes.byteLength > maxBytes) return Option.some({ tooLarge: bytes.byteLength })
      return Option.some({ bytes: new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength) })
    })
  ).pipe(Effect.catchIf(isCode("ENOENT", "ENOTDIR"), () => Effect.succeedNone))

/**
 * Read `length` bytes at `position` (fewer at the end of the file).
 *
 * @internal
 */
export const readChunk = (
  handle: NodeFs.FileHandle,
  path: string,
  position: number,
  length: number
): Effect.Effect<Uint8Array, FsError> =>
  attempt("read", path, async () => {
    const buffer = new Uint8Array(length)
    const { bytesRead } = await handle.read(buffer, 0, length, position)
    return bytesRead === length ? buffer : buffer.subarray(0, bytesRead)
  })

/**
 * sha256 and size of a file, read in chunks; `Option.none()` when it does not exist.
 *
 * @internal
 */
export const hashFile = (path: string): Effect.Effect<Option.Option<{ readonly digest: Digest.Digest; readonly size: number }>, FsError> =>
  Effect.scoped(
    Effect.gen(function*() {
      const handle = yield* open(path, "r")
      const hasher = Digest.makeHasher()
      const buffer = new Uint8Array(256 * 1024)
      for (;;) {
        const { bytesRead } = yield* attempt("read", path, () => handle.read(buffer, 0, buffer.byteLength, null))
        if (bytesRead === 0) break
        hasher.update(buffer.subarray(0, bytesRead))
      }
      return Option.some({ digest: hasher.digest(), size: hasher.size() })
    })
  ).pipe(Effect.catchIf(isCode("ENOENT", "ENOTDIR"), () => Effect.succeedNone))

/**
 * Set a file's modification time to now; `false` when it does not exist. Wall-clock time on
 * purpose (not `Clock`): it must be comparable with the times the kernel gives freshly written files.
 *
 * @internal
 */
export const touch = (path: string): Effect.Effect<boolean, FsError> =>
  Effect.suspend(() => {
    const now = new Date()
    return attempt("utimes", path, () => NodeFs.utimes(path, now, now)).pipe(
      Effect.as(true),
      Effect.catchIf(isCode("ENOENT"), () => Effect.succeed(false))
    )
  })

/**
 * fsync a directory, so that a rename or link in it survives a crash. Platforms that cannot open
 * or sync a directory are tolerated; a real I/O error is not.
 *
 * @internal
 */
export const syncDirectory = (path: string): Effect.Effect<void, FsError> =>
  Effect.scoped(
    Effect.flatMap(open(path, "r"), (handle) => attempt("fsync", path, () => handle.sync()))
  ).pipe(Effect.catchIf(isCode("EISDIR", "EINVAL", "EPERM", "EACCES", "ENOTSUP"), () => Effect.void))

/** @internal */
export interface WriteOptions {
  /** fsync the file before it becomes visible, and the directory after. */
  readonly durable: boolean
  /**
   * `replace`: rename over whatever is there. `create`: only if absent (`link(2)`, which never
   * overwrites); `false` is returned when the file already existed.
   */
  readonly mode: "replace" | "create"
}

/**
 * Write `chunks` to `path` atomically: readers see the old file or the complete new one, never a
 * partial write. The temp file lives in the same directory (so the rename stays on one
 * filesystem) and starts with a dot (repository names never do, so it cannot collide with one).
 * `true` when written.
 *
 * @internal
 */
export const writeAtomic = (
  path: string,
  chunks: ReadonlyArray<Uint8Array>,
  options: WriteOptions
): Effect.Effect<boolean, FsError> =>
  Effect.suspend(() => {
    const directory = NodePath.dirname(path)
    const temp = NodePath.join(directory, `.${NodePath.basename(path)}.${randomUUID()}.tmp`)
    const write = Effect.scoped(
      Effect.gen(function*() {
        const handle = yield* open(temp, "wx", 0o644)
        for (const chunk of chunks) {
          if (chunk.byteLength > 0) yield* attempt("write", temp, () => handle.writeFile(chunk))
        }
        if (options.durable) yield* attempt("fsync", temp, () => handle.sync())
      })
    )
    const publish: Effect.Effect<boolean, FsError> = options.mode === "replace"
      ? Effect.as(rename(temp, path), true)
      : Effect.zipLeft(link(temp, path), discard(temp))
    return write.pipe(
      Effect.zipRight(publish),
      Effect.tap(() => (options.durable ? syncDirectory(directory) : Effect.void)),
      Effect.onExit((exit) => (exit._tag === "Success" ? Effect.void : discard(temp)))
    )
  })

/**
 * Whether a process with this PID exists on this machine (`kill(pid, 0)`: ESRCH means gone,
 * EPERM means alive but not ours).
 *
 * @internal
 */
export const processAlive = (pid: number): Effect.Effect<boolean> =>
  Effect.sync(() => {
    if (!Number.isSafeInteger(pid) || pid <= 0) return false
    try {
      process.kill(pid, 0)
      return true
    } catch (error) {
      return errnoCode(error) !== "ESRCH"
    }
  })

const describeCode: Record<string, string> = {
  ENOSPC: "no space left on device",
  EDQUOT: "disk quota exceeded",
  EROFS: "read-only file system",
  EACCES: "permission denied",
  EPERM: "operation not permitted",
  EMFILE: "too many open files in this process",
  ENFILE: "too many open files on this system",
  EIO: "input/output error",
  ENOTDIR: "a component of the path is not a directory",
  EISDIR: "is a directory",
  ENAMETOOLONG: "file name too long",
  EBUSY: "resource busy",
  EAGAIN: "resource temporarily unavailable",
  ELOOP: "too many symbolic links",
  EEXIST: "already exists",
  ENOENT: "no such file or directory"
}

/** A one-line human reason: what was done to which path, and why it failed. @internal */
export const describe = (e: FsError): string => {
  const why = describeCode[e.code]
  return why === undefined ? `${e.syscall} ${e.path}: ${e.detail}` : `${e.syscall} ${e.path}: ${why} (${e.code})`
}

/** Errors worth retrying: the condition may clear by itself. @internal */
export const isTransient = (e: FsError): boolean => ["EMFILE", "ENFILE", "EAGAIN", "EBUSY", "EINTR", "ETIMEDOUT"].includes(e.code)
