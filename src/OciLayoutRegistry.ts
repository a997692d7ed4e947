/**
 * `OciLayoutRegistry`: the `Registry` service over OCI image-layout directories on the local disk —
 * the embedded default store of oras-state. Same behaviour as a real registry (the behavioural
 * suite runs against it), and readable by other OCI tools: `skopeo inspect oci:DIR/REPO:TAG`.
 *
 * Layout: repository `name` is the directory `<dir>/<name>` (its `/` are subdirectories), an OCI
 * image layout of its own:
 * - `oci-layout` = `{"imageLayoutVersion":"1.0.0"}`;
 * - `index.json`, an image index: one descriptor per tag, the tag in
 *   `annotations["org.opencontainers.image.ref.name"]`; manifests pushed by digest, and manifests
 *   whose last tag moved away or was deleted, once without a ref name (a real registry keeps them
 *   until deleted by digest);
 * - `blobs/sha256/<hex>`: blobs and manifests alike.
 * Inside a repository directory, `blobs`, `index.json` and `oci-layout` are taken, so a nested
 * repository may not use them as a path component (`InvalidReference`). Private files (lock, temp
 * files) start with a dot, which no repository name can.
 *
 * Atomicity: every file is written to a temp file in its final directory, fsynced (with `durable`,
 * the default), then renamed over its name (and the directory fsynced): a reader sees the old or
 * the new file, never a part of one. Blobs are verified (sha256 and size) before anything is written. A manifest file is
 * written before the `index.json` that names it, and removed after the `index.json` that no longer
 * does, so `index.json` never names a missing manifest. A manifest read that finds the file gone
 * (deleted after the `index.json` it followed was read) reads `index.json` again, so a tag moved and
 * pruned meanwhile gives its new manifest, never a spurious `None`.
 *
 * Concurrency: the read-modify-write of a repository's `index.json` (and the writing and removal of
 * manifest files) happens under a per-repository lock file `.index.json.lock` that serialises
 * processes (see `internal/ociLayout/lock.ts`: `link(2)`-created, PID + timestamp, stale-lock
 * recovery when the holder died or is older than `lockStaleAfter`, jittered backoff up to
 * `lockTimeout`), and under a per-repository semaphore within the process. Blob uploads need no
 * lock (content-addressed, renamed into place). Reads take no lock.
 *
 * Garbage collection (under the lock): deleting a manifest by digest removes its file (unless a
 * remaining manifest references that digest, e.g. an image index), and then, unless `gc` is
 * `false`, the blobs it referenced that no remaining manifest of the repository references and that
 * were last written more than `gcGracePeriod` ago (default 10 minutes, so that a blob uploaded for
 * a manifest not yet pushed is kept; `putBlob` of an existing blob refreshes its time). If a
 * remaining manifest cannot be read, nothing is removed. Not collected: blobs that were never
 * referenced (an upload not followed by its manifest), blobs of manifests deleted within the grace
 * period, and temp files left by a crash (all dot-files, ignored by readers). A writer that relies
 * on an old blob without uploading it again can, in a narrow race with a concurrent delete, get
 * `MANIFEST_BLOB_UNKNOWN` — as with a registry's online GC — and never a manifest naming a missing
 * blob. Deleting by tag removes the tag only; the manifest stays, reachable by digest.
 *
 * Failures: filesystem errors are `RegistryError` with the path and errno in `reason` (ENOSPC,
 * EACCES, EROFS, …), or `TransientRegistry` for conditions that clear (EMFILE, EAGAIN, a lock
 * held past `lockTimeout`). A damaged `index.json` or manifest is `CorruptState` where the
 * operation allows it. Never a defect.
 *
 * POSIX filesystems on one machine (rename over an open file, `link(2)`, PID liveness). Lock
 * timestamps and waits use `Clock`: under a `TestClock`, a writer that finds the lock held waits
 * until the clock is advanced (uncontended writes never sleep).
 *
 * @since 0.1.0
 */
import * as NodePath from "node:path"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import * as Digest from "./Digest.js"
import { CorruptState, InvalidConfig, InvalidReference, RegistryError, TransientRegistry } from "./Errors.js"
import * as Fs from "./internal/ociLayout/fs.js"
import * as ImageIndex from "./internal/ociLayout/imageIndex.js"
import * as Lock from "./internal/ociLayout/lock.js"
import * as ManifestRefs from "./internal/ociLayout/manifest.js"
import * as Reference from "./internal/reference.js"
import { instrumentRegistry, registrySpan, registryStreamSpan } from "./internal/telemetry.js"
import * as Verify from "./internal/verify.js"
import { type BlobBody, type BlobRef, type BlobUpload, maxManifestBytes, Registry, type Service } from "./Registry.js"

/**
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** fsync files and directories before a write is reported done (default `true`). */
  readonly durable?: boolean | undefined
  /** How long a writer waits for a repository's `index.json` lock (default 60 seconds). */
  readonly lockTimeout?: Duration.DurationInput | undefined
  /**
   * A lock older than this is broken, whatever its holder (default 30 seconds; a lock whose holder
   * process is gone is broken at once). Must exceed the longest write (a 4 MiB manifest).
   */
  readonly lockStaleAfter?: Duration.DurationInput | undefined
  /** Remove the blobs a deleted manifest leaves unreferenced (default `true`). */
  readonly gc?: boolean | undefined
  /** Blobs written more recently than this are never collected (default 10 minutes). */
  readonly gcGracePeriod?: Duration.DurationInput | undefined
}

/**
 * @since 0.1.0
 * @category constants
 */
export const defaults = {
  durable: true,
  lockTimeout: Duration.seconds(60),
  lockStaleAfter: Duration.seconds(30),
  gc: true,
  gcGracePeriod: Duration.minutes(10)
} as const

/**
 * Path components a nested repository may not use: they name the parts of the enclosing layout.
 *
 * @since 0.1.0
 * @category constants
 */
export const reservedComponents: ReadonlySet<string> = new Set(["blobs", "index.json", "oci-layout"])

// A lock file's timestamp is foreign input: an impossible date must not throw.
const formatTime = (millis: number): string => {
  const date = new Date(millis)
  return Number.isNaN(date.getTime()) ? String(millis) : date.toISOString()
}

const ociLayoutBytes = new TextEncoder().encode(JSON.stringify({ imageLayoutVersion: "1.0.0" }))
const maxIndexBytes = 64 * 1024 * 1024
const blobChunkSize = 64 * 1024

/**
 * A `Registry` over the OCI image layouts under `dir` (created if missing).
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (dir: string, options: Options = {}): Effect.Effect<Service, InvalidConfig> =>
  Effect.gen(function*() {
    if (dir.trim() === "") {
      return yield* new InvalidConfig({ key: "dir", value: dir, reason: "the OCI layout directory must not be empty" })
    }
    const root = NodePath.resolve(dir)
    const invalidDir = (e: Fs.FsError) => new InvalidConfig({ key: "dir", value: root, reason: Fs.describe(e) })
    yield* Fs.mkdirp(root).pipe(Effect.mapError(invalidDir))
    const info = yield* Fs.stat(root).pipe(Effect.mapError(invalidDir))
    if (Option.isNone(info) || !info.value.isDirectory()) {
      return yield* new InvalidConfig({ key: "dir", value: root, reason: "not a directory" })
    }

    const durable = options.durable ?? defaults.durable
    const lockOptions: Lock.LockOptions = {
      timeout: Duration.decode(options.lockTimeout ?? defaults.lockTimeout),
      staleAfter: Duration.decode(options.lockStaleAfter ?? defaults.lockStaleAfter)
    }
    const gc = options.gc ?? defaults.gc
    const gcGraceMillis = Duration.toMillis(Duration.decode(options.gcGracePeriod ?? defaults.gcGracePeriod))

    // -- paths ------------------------------------------------------------------------------------

    const repositoryDir = (repository: string) => NodePath.join(root, ...repository.split("/"))
    const indexPath = (repoDir: string) => NodePath.join(repoDir, "index.json")
    const lockPath = (repoDir: string) => NodePath.join(repoDir, ".index.json.lock")
    const blobsDir = (repoDir: string) => NodePath.join(repoDir, "blobs", "sha256")
    const blobPath = (repoDir: string, digest: Digest.Digest) => NodePath.join(blobsDir(repoDir), digest.slice(7))

    // -- validation and errors ----------------------------------------------------------------------

    const validateRepository = (repository: string) =>
      Effect.flatMap(Reference.validateRepository(repository), (name) => {
        const reserved = name.split("/").slice(1).find((part) => reservedComponents.has(part))
        return reserved === undefined
          ? Effect.succeed(repositoryDir(name))
          : Effect.fail(
            new InvalidReference({
              kind: "repository",
              value: name,
              reason: `the OCI-layout store keeps "${reserved}" inside each repository directory, ` +
                `so a nested repository cannot use it as a path component`
            })
          )
      })

    const fsFailure = (operation: string) => (e: Fs.FsError): TransientRegistry | RegistryError =>
      Fs.isTransient(e)
        ? new TransientRegistry({ operation, reason: Fs.describe(e) })
        : new RegistryError({ operation, reason: Fs.describe(e) })

    const lockFailure = (operation: string) => (e: Lock.LockBusy | Lock.LockLost): TransientRegistry =>
      e._tag === "LockBusy"
        ? new TransientRegistry({
          operation,
          reason: `timed out after ${Duration.format(lockOptions.timeout)} waiting for ${e.path}` +
            (e.holder === undefined
              ? ""
              : ` (held by pid ${e.holder.pid} on ${e.holder.hostname} since ${formatTime(e.holder.acquiredAt)})`)
        })
        : new TransientRegistry({
          operation,
          reason: `lock ${e.path} was broken as stale by another process while held; nothing was written`
        })

    // Operations whose signature has no CorruptState report a damaged index.json as a registry error.
    const corruptAsRegistryError = (operation: string) => (e: CorruptState) =>
      new RegistryError({ operation, reason: e.message })

    const span = (name: string, repository: string, reference?: string, bytes?: number) =>
      registrySpan(name, { registry: `oci-layout:${root}`, repository, reference, bytes })

    // -- index.json and layout ----------------------------------------------------------------------

    /** The repository's index; `None` when the repository (or its index.json) does not exist. */
    const readIndex = (repoDir: string): Effect.Effect<Option.Option<ImageIndex.ImageIndex>, Fs.FsError | CorruptState> =>
      Effect.flatMap(Fs.readBounded(indexPath(repoDir), maxIndexBytes), (read) => {
        if (Option.isNone(read)) return Effect.succeedNone
        if ("tooLarge" in read.value) {
          return Effect.fail(
            new CorruptState({ reason: `${indexPath(repoDir)} is ${read.value.tooLarge} bytes, over ${maxIndexBytes}` })
          )
        }
        return Either.match(ImageIndex.parse(read.value.bytes), {
          onLeft: (reason) => Effect.fail(new CorruptState({ reason: `${indexPath(repoDir)}: ${reason}` })),
          onRight: (index) => Effect.succeed(Option.some(index))
        })
      })

    const readIndexOrEmpty = (repoDir: string) =>
      Effect.map(readIndex(repoDir), Option.getOrElse(() => ImageIndex.empty))

    /** Create the repository's layout if needed. Create-if-absent by `link`: no lock needed. */
    const ensureLayout = (repoDir: string): Effect.Effect<void, Fs.FsError> =>
      Effect.gen(function*() {
        if (Option.isSome(yield* Fs.stat(indexPath(repoDir)))) return
        yield* Fs.mkdirp(blobsDir(repoDir))
        yield* Fs.writeAtomic(NodePath.join(repoDir, "oci-layout"), [ociLayoutBytes], { durable, mode: "create" })
        yield* Fs.writeAtomic(indexPath(repoDir), [ImageIndex.serialize(ImageIndex.empty)], { durable, mode: "create" })
      })

    const semaphores = new Map<string, Effect.Semaphore>()
    const semaphoreOf = (repoDir: string) => {
      let semaphore = semaphores.get(repoDir)
      if (semaphore === undefined) {
        semaphore = Effect.unsafeMakeSemaphore(1)
        semaphores.set(repoDir, semaphore)
      }
      return semaphore
    }

    /** Run `use` as the only writer of the repository's index.json, in this process and across processes. */
    const withIndexLock = <A, E>(
      repoDir: string,
      use: (commit: (index: ImageIndex.ImageIndex) => Effect.Effect<void, Fs.FsError | Lock.LockLost>) => Effect.Effect<A, E>
    ) =>
      semaphoreOf(repoDir).withPermits(1)(
        Lock.withLock(lockPath(repoDir), lockOptions, (held) =>
          use((index) =>
            Effect.zipRight(
              held.verify,
              Fs.writeAtomic(indexPath(repoDir), [ImageIndex.serialize(index)], { durable, mode: "replace" })
            )
          ))
      )

    /** The descriptor a reference names, if the repository holds such a manifest. */
    const lookup = (index: ImageIndex.ImageIndex, reference: string) => {
      const descriptor = Reference.isDigestReference(reference)
        ? ImageIndex.findDigest(index, reference)
        : ImageIndex.findTag(index, reference)
      if (descriptor === undefined) return Effect.succeedNone
      if (!Digest.isDigest(descriptor.digest)) {
        return Effect.fail(
          new CorruptState({ digest: descriptor.digest, reason: "index.json names a digest this store cannot read" })
        )
      }
      return Effect.succeed(Option.some({ ...descriptor, digest: descriptor.digest }))
    }

    // -- manifests --------------------------------------------------------------------------------------

    /**
     * Look `reference` up and read what it names with `read` (`None` when the manifest file is gone).
     * A file can be gone because the manifest was deleted after `index.json` was read (the file is
     * removed after the index update): then `index.json` is read again, so that a tag moved and
     * pruned meanwhile yields its new manifest rather than a spurious `None`. A file missing while
     * two successive `index.json` reads list it is `CorruptState`.
     */
    const readListed = <A>(
      operation: string,
      repoDir: string,
      reference: string,
      read: (descriptor: ImageIndex.Descriptor & { readonly digest: Digest.Digest }) => Effect.Effect<Option.Option<A>, Fs.FsError | CorruptState>
    ) =>
      Effect.gen(function*() {
        let missing: Digest.Digest | undefined
        for (let attempt = 0; attempt < 8; attempt++) {
          const index = yield* readIndexOrEmpty(repoDir)
          const found = yield* lookup(index, reference)
          if (Option.isNone(found)) return Option.none<A>()
          const result = yield* read(found.value)
          if (Option.isSome(result)) return result
          if (missing === found.value.digest) {
            return yield* new CorruptState({
              digest: missing,
              reason: `index.json lists the manifest but ${blobPath(repoDir, missing)} is missing`
            })
          }
          missing = found.value.digest
        }
        return yield* new TransientRegistry({ operation, reason: `${indexPath(repoDir)} kept changing while it was read` })
      })


    const resolveManifest: Service["resolveManifest"] = (repository, reference) =>
      Effect.gen(function*() {
        const repoDir = yield* validateRepository(repository)
        yield* Reference.validateReference(reference)
        return yield* readListed("resolveManifest", repoDir, reference, (descriptor) =>
          Effect.flatMap(Fs.stat(blobPath(repoDir, descriptor.digest)), (file) => {
            if (Option.isNone(file)) return Effect.succeedNone
            if (file.value.size !== descriptor.size) {
              return Effect.fail(
                new CorruptState({
                  digest: descriptor.digest,
                  reason: `manifest file has ${file.value.size} bytes, index.json declares ${descriptor.size}`
                })
              )
            }
            return Effect.succeed(
              Option.some({ digest: descriptor.digest, size: descriptor.size, mediaType: descriptor.mediaType })
            )
          }))
      }).pipe(
        Effect.catchTag("FsError", (e) => Effect.fail(fsFailure("resolveManifest")(e))),
        span("resolveManifest", repository, reference)
      )

    const getManifest: Service["getManifest"] = (repository, reference) =>
      Effect.gen(function*() {
        const repoDir = yield* validateRepository(repository)
        yield* Reference.validateReference(reference)
        return yield* readListed("getManifest", repoDir, reference, (descriptor) =>
          Effect.gen(function*() {
            const read = yield* Fs.readBounded(blobPath(repoDir, descriptor.digest), maxManifestBytes)
            if (Option.isNone(read)) return Option.none()
            if ("tooLarge" in read.value) {
              return yield* new CorruptState({
                digest: descriptor.digest,
                reason: `manifest file is ${read.value.tooLarge} bytes, over the ${maxManifestBytes} byte limit`
              })
            }
            const bytes = read.value.bytes
            if (bytes.byteLength !== descriptor.size) {
              return yield* new CorruptState({
                digest: descriptor.digest,
                reason: `manifest has ${bytes.byteLength} bytes, index.json declares ${descriptor.size}`
              })
            }
            const digest = yield* Verify.verifyManifestBytes(bytes, [descriptor.digest])
            return Option.some({ digest, mediaType: descriptor.mediaType, bytes })
          }))
      }).pipe(
        Effect.catchTag("FsError", (e) => Effect.fail(fsFailure("getManifest")(e))),
        span("getManifest", repository, reference)
      )

    const putManifest: Service["putManifest"] = (repository, reference, manifest) =>
      Effect.gen(function*() {
        const repoDir = yield* validateRepository(repository)
        yield* Reference.validateReference(reference)
        const bytes = manifest.bytes.slice()
        if (bytes.byteLength > maxManifestBytes) {
          return yield* new RegistryError({
            operation: "putManifest",
            status: 400,
            code: "MANIFEST_INVALID",
            reason: `manifest is ${bytes.byteLength} bytes, over the ${maxManifestBytes} byte limit`
          })
        }
        const digest = Digest.sha256(bytes)
        if (Reference.isDigestReference(reference) && reference !== digest) {
          return yield* new RegistryError({
            operation: "putManifest",
            status: 400,
            code: "DIGEST_INVALID",
            reason: `manifest content hashes to ${digest}, not ${reference}`
          })
        }
        const referenced = ManifestRefs.referencedDigests(bytes, manifest.mediaType)
        if (Either.isLeft(referenced)) {
          return yield* new RegistryError({
            operation: "putManifest",
            status: 400,
            code: "MANIFEST_INVALID",
            reason: `manifest invalid: ${referenced.left}`
          })
        }
        yield* ensureLayout(repoDir)
        const descriptor = { mediaType: manifest.mediaType, digest, size: bytes.byteLength }
        yield* withIndexLock(repoDir, (commit) =>
          Effect.gen(function*() {
            // Under the lock: garbage collection (which also runs under it) cannot remove a blob
            // between this check and the index update.
            const missing: Array<Digest.Digest> = []
            for (const d of new Set(referenced.right)) {
              if (Option.isNone(yield* Fs.stat(blobPath(repoDir, d)))) missing.push(d)
            }
            if (missing.length > 0) {
              return yield* new RegistryError({
                operation: "putManifest",
                status: 400,
                code: "MANIFEST_BLOB_UNKNOWN",
                reason: `blob unknown to registry: ${missing.join(", ")}`
              })
            }
            const path = blobPath(repoDir, digest)
            const existing = yield* Fs.readBounded(path, maxManifestBytes)
            const intact = Option.isSome(existing) && "bytes" in existing.value &&
              Digest.sha256(existing.value.bytes) === digest
            if (!intact) yield* Fs.writeAtomic(path, [bytes], { durable, mode: "replace" })
            const index = yield* readIndexOrEmpty(repoDir)
            if (Reference.isDigestReference(reference)) {
              const next = ImageIndex.addUntagged(index, descriptor)
              if (next !== undefined) yield* commit(next)
            } else {
              const current = ImageIndex.findTag(index, reference)
              if (current?.digest !== digest || current.mediaType !== descriptor.mediaType) {
                yield* commit(ImageIndex.setTag(index, reference, descriptor))
              }
            }
          }))
        return digest
      }).pipe(
        Effect.catchTags({
          FsError: (e) => Effect.fail(fsFailure("putManifest")(e)),
          LockBusy: (e) => Effect.fail(lockFailure("putManifest")(e)),
          LockLost: (e) => Effect.fail(lockFailure("putManifest")(e))
        }),
        span("putManifest", repository, reference, manifest.bytes.byteLength)
      )

    /** What the remaining manifests reference; `undefined` when one of them cannot be read. */
    const referencedByRemaining = (repoDir: string, index: ImageIndex.ImageIndex) =>
      Effect.gen(function*() {
        const referenced = new Set<string>()
        for (const digest of ImageIndex.digests(index)) {
          const read = yield* Fs.readBounded(blobPath(repoDir, digest), maxManifestBytes)
          if (Option.isNone(read)) continue
          if (!("bytes" in read.value)) return undefined
          const refs = ManifestRefs.referencedDigests(read.value.bytes, undefined)
          if (Either.isLeft(refs)) return undefined
          for (const d of refs.right) referenced.add(d)
        }
        return referenced
      })

    /**
     * After `deleted` left the index: remove its file, then the blobs only it referenced (past the
     * grace period). Runs under the index lock. Conservative: if any remaining manifest cannot be
     * read, nothing is removed.
     */
    const collect = (repoDir: string, index: ImageIndex.ImageIndex, deleted: Digest.Digest, deletedBytes: Option.Option<Uint8Array>) =>
      Effect.gen(function*() {
        const referenced = yield* referencedByRemaining(repoDir, index)
        if (referenced === undefined) {
          yield* Effect.logWarning(`${repoDir}: a manifest is unreadable; no blobs removed after deleting ${deleted}`)
          return
        }
        if (!referenced.has(deleted)) yield* Fs.unlink(blobPath(repoDir, deleted))
        if (!gc || Option.isNone(deletedBytes)) return
        const candidates = ManifestRefs.referencedDigests(deletedBytes.value, undefined)
        if (Either.isLeft(candidates)) return
        const manifests = new Set<string>(ImageIndex.digests(index))
        const now = yield* Clock.currentTimeMillis
        for (const blob of new Set(candidates.right)) {
          if (blob === deleted || referenced.has(blob) || manifests.has(blob)) continue
          const path = blobPath(repoDir, blob)
          const file = yield* Fs.stat(path)
          if (Option.isSome(file) && now - file.value.mtimeMs >= gcGraceMillis) yield* Fs.unlink(path)
        }
      })

    const deleteManifest: Service["deleteManifest"] = (repository, reference) =>
      Effect.gen(function*() {
        const repoDir = yield* validateRepository(repository)
        yield* Reference.validateReference(reference)
        if (Option.isNone(yield* Fs.stat(indexPath(repoDir)))) return false
        return yield* withIndexLock(repoDir, (commit) =>
          Effect.gen(function*() {
            const index = yield* readIndexOrEmpty(repoDir)
            if (!Reference.isDigestReference(reference)) {
              const next = ImageIndex.removeTag(index, reference)
              if (next === undefined) return false
              yield* commit(next)
              return true
            }
            const digest = reference as Digest.Digest
            const next = ImageIndex.removeDigest(index, digest)
            if (next === undefined) return false
            const read = yield* Fs.readBounded(blobPath(repoDir, digest), maxManifestBytes)
            const deletedBytes = Option.flatMap(read, (r) => ("bytes" in r ? Option.some(r.bytes) : Option.none()))
            yield* commit(next)
            yield* collect(repoDir, next, digest, deletedBytes)
            return true
          }))
      }).pipe(
        Effect.catchTags({
          FsError: (e) => Effect.fail(fsFailure("deleteManifest")(e)),
          LockBusy: (e) => Effect.fail(lockFailure("deleteManifest")(e)),
          LockLost: (e) => Effect.fail(lockFailure("deleteManifest")(e)),
          CorruptState: (e) => Effect.fail(corruptAsRegistryError("deleteManifest")(e))
        }),
        span("deleteManifest", repository, reference)
      )

    // -- blobs ------------------------------------------------------------------------------------------

    const blobExists: Service["blobExists"] = (repository, digest) =>
      Effect.gen(function*() {
        const repoDir = yield* validateRepository(repository)
        yield* Reference.validateDigest(digest)
        const file = yield* Fs.stat(blobPath(repoDir, digest))
        return Option.isSome(file) && file.value.isFile() ? Option.some(file.value.size) : Option.none()
      }).pipe(
        Effect.catchTag("FsError", (e) => Effect.fail(fsFailure("blobExists")(e))),
        span("blobExists", repository, digest)
      )

    const getBlob: Service["getBlob"] = (repository, blob) =>
      Stream.unwrapScoped(
        Effect.gen(function*() {
          const repoDir = yield* validateRepository(repository)
          yield* Reference.validateDigest(blob.digest)
          const path = blobPath(repoDir, blob.digest)
          const handle = yield* Fs.open(path, "r").pipe(
            Effect.catchIf((e) => e.code === "ENOENT" || e.code === "ENOTDIR", () =>
              Effect.fail(
                new RegistryError({
                  operation: "getBlob",
                  status: 404,
                  code: "BLOB_UNKNOWN",
                  reason: `blob unknown to registry: ${blob.digest}`
                })
              ))
          )
          // The open handle keeps reading the same file even if it is replaced or removed meanwhile.
          return Stream.unfoldEffect(0, (position) =>
            Effect.map(
              Fs.readChunk(handle, path, position, blobChunkSize),
              (chunk) => chunk.byteLength === 0 ? Option.none() : Option.some([chunk, position + chunk.byteLength] as const)
            ))
        }).pipe(Effect.mapError((e) => (e._tag === "FsError" ? fsFailure("getBlob")(e) : e)))
      ).pipe(
        Stream.mapError((e) => (e._tag === "FsError" ? fsFailure("getBlob")(e) : e)),
        Verify.verifyBlobStream(blob),
        registryStreamSpan("getBlob", {
          registry: `oci-layout:${root}`,
          repository,
          reference: blob.digest,
          bytes: blob.size
        })
      )

    const getBlobBytes: Service["getBlobBytes"] = (repository, blob) =>
      Effect.gen(function*() {
        const repoDir = yield* validateRepository(repository)
        yield* Reference.validateDigest(blob.digest)
        // Read whole (one allocation of the file's size, refused unread when it is larger than the
        // descriptor says), then verified.
        const read = yield* Fs.readBounded(blobPath(repoDir, blob.digest), blob.size)
        if (Option.isNone(read)) {
          return yield* new RegistryError({
            operation: "getBlob",
            status: 404,
            code: "BLOB_UNKNOWN",
            reason: `blob unknown to registry: ${blob.digest}`
          })
        }
        if ("tooLarge" in read.value) {
          return yield* new CorruptState({
            digest: blob.digest,
            reason: `blob has ${read.value.tooLarge} bytes, its descriptor declares ${blob.size}`
          })
        }
        return yield* Verify.verifyBlobBytes(read.value.bytes, blob)
      }).pipe(
        Effect.mapError((e) => (e._tag === "FsError" ? fsFailure("getBlob")(e) : e)),
        span("getBlob", repository, blob.digest, blob.size)
      )

    const putBlob: Service["putBlob"] = (repository, blob, body: BlobBody) =>
      Effect.gen(function*() {
        const repoDir = yield* validateRepository(repository)
        yield* Reference.validateDigest(blob.digest)
        const chunks: ReadonlyArray<Uint8Array> = body instanceof Uint8Array ? [body] : body
        const hasher = Digest.makeHasher()
        for (const chunk of chunks) hasher.update(chunk)
        const actual = hasher.digest()
        if (actual !== blob.digest || hasher.size() !== blob.size) {
          return yield* new RegistryError({
            operation: "putBlob",
            status: 400,
            code: "DIGEST_INVALID",
            reason: `content (${hasher.size()} bytes) hashes to ${actual}, not ${blob.digest} (${blob.size} bytes)`
          })
        }
        yield* ensureLayout(repoDir)
        const path = blobPath(repoDir, blob.digest)
        // An intact copy is kept (its time refreshed, for the GC grace period); a damaged one is replaced.
        const existing = yield* Fs.hashFile(path)
        const intact = Option.isSome(existing) && existing.value.digest === blob.digest &&
          existing.value.size === blob.size
        if (!(intact && (yield* Fs.touch(path)))) {
          yield* Fs.writeAtomic(path, chunks, { durable, mode: "replace" })
        }
      }).pipe(
        Effect.catchTag("FsError", (e) => Effect.fail(fsFailure("putBlob")(e))),
        span("putBlob", repository, blob.digest, blob.size)
      )

    // -- tags ----------------------------------------------------------------------------------------------

    // Nothing to open in a layout: the blob is written at `finish`.
    const startBlobUpload: Service["startBlobUpload"] = (repository) =>
      Effect.as(Reference.validateRepository(repository), {
        finish: (blob: BlobRef, body: BlobBody) => putBlob(repository, blob, body)
      } satisfies BlobUpload).pipe(span("startBlobUpload", repository))

    // The index is one file: every tag at once.
    const listAllTags: Service["listAllTags"] = (repository) =>
      Effect.gen(function*() {
        const repoDir = yield* validateRepository(repository)
        const index = yield* readIndexOrEmpty(repoDir)
        return ImageIndex.tags(index, Reference.isValidTag)
      }).pipe(
        Effect.catchTags({
          FsError: (e) => Effect.fail(fsFailure("listTags")(e)),
          CorruptState: (e) => Effect.fail(corruptAsRegistryError("listTags")(e))
        }),
        span("listTags", repository)
      )

    const listTags: Service["listTags"] = (repository) =>
      Stream.unwrap(Effect.map(listAllTags(repository), Stream.fromIterable))

    // Spans are emitted above; the wrapper counts bytes moved.
    return Registry.of(instrumentRegistry({
      location: `oci-layout:${root}`,
      resolveManifest,
      getManifest,
      putManifest,
      deleteManifest,
      blobExists,
      getBlob,
      getBlobBytes,
      putBlob,
      startBlobUpload,
      listTags,
      listAllTags
    }, { spans: false }))
  })

/**
 * The `Registry` over the OCI image layouts under `dir`. Needs nothing else: it uses `node:fs`.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (dir: string, options: Options = {}): Layer.Layer<Registry, InvalidConfig> =>
  Layer.effect(Registry, make(dir, options))
