/**
 * `MemoryRegistry`: an in-memory `Registry` with the semantics of a real OCI registry
 * (byte-exact manifests, digest-verified blob uploads, manifests that must reference existing blobs,
 * DELETE by digest removing every tag on it, 4 MiB manifest cap, paginated tag listing) plus
 * switches that emulate the quirks of real registries, and fault injection, so that the layers
 * above can be tested against each quirk:
 *
 * - `deleteUnsupported`: every DELETE answers 405 UNSUPPORTED (GHCR);
 * - `tagDeleteUnsupported`: DELETE by tag answers 400 DIGEST_INVALID (distribution 2.8);
 * - `ignoresTagPageSize`: tag listing returns everything at once, unsorted (distribution 2.8);
 * - `tagListingLag`: tag listing shows the tags as they were that long ago (eventually consistent
 *   registries);
 * - `faults`: per-request transient failures (429 with `Retry-After`, 503, …), optionally after the
 *   operation took effect ("response lost").
 *
 * Every operation is atomic, which makes it the substrate for interleaving tests: a schedule can
 * interleave contenders at operation boundaries.
 *
 * @since 0.1.0
 */
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import * as Digest from "./Digest.js"
import { RegistryError, TransientRegistry, Unsupported } from "./Errors.js"
import * as Pages from "./internal/pages.js"
import * as Reference from "./internal/reference.js"
import { instrumentRegistry } from "./internal/telemetry.js"
import * as Verify from "./internal/verify.js"
import { type BlobBody, type BlobRef, type ListTagsOptions, maxManifestBytes, Registry, type Service } from "./Registry.js"
import * as Retry from "./Retry.js"

/**
 * @since 0.1.0
 * @category models
 */
export type Operation =
  | "resolveManifest"
  | "getManifest"
  | "putManifest"
  | "deleteManifest"
  | "blobExists"
  | "getBlob"
  | "putBlob"
  | "listTags"

/**
 * One request as a real registry would have seen it. `httpRequests` is what the HTTP client sends
 * for it on the happy path (a blob upload is a POST and a PUT).
 *
 * @since 0.1.0
 * @category models
 */
export interface RequestRecord {
  readonly operation: Operation
  readonly repository: string
  readonly reference?: string | undefined
  readonly httpRequests: number
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Fault {
  /** HTTP status to emulate: 429, 408 and 5xx other than 501 are transient, anything else is not. */
  readonly status: number
  readonly retryAfterMillis?: number | undefined
  /** The operation takes effect on the registry, but its response is lost. */
  readonly responseLost?: boolean | undefined
}

/**
 * Decides, for each request, whether it fails.
 *
 * @since 0.1.0
 * @category models
 */
export type FaultPlan = (request: RequestRecord) => Fault | undefined

/**
 * @since 0.1.0
 * @category models
 */
export interface Quirks {
  readonly deleteUnsupported?: boolean | undefined
  readonly tagDeleteUnsupported?: boolean | undefined
  readonly ignoresTagPageSize?: boolean | undefined
  readonly tagListingLag?: Duration.DurationInput | undefined
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Options {
  readonly quirks?: Quirks | undefined
  readonly faults?: FaultPlan | undefined
  /** Client retry policy applied to idempotent operations; default: no retries. */
  readonly retry?: Retry.Options | undefined
  /** Page size used when the caller asks none (default 100). */
  readonly defaultTagPageSize?: number | undefined
}

/**
 * Test-side access to a running `MemoryRegistry`.
 *
 * @since 0.1.0
 * @category models
 */
export interface Control {
  readonly requests: Effect.Effect<ReadonlyArray<RequestRecord>>
  readonly clearRequests: Effect.Effect<void>
  readonly setFaults: (plan: FaultPlan | undefined) => Effect.Effect<void>
  readonly setQuirks: (quirks: Quirks) => Effect.Effect<void>
  /** Current tags of a repository and the digests they point at (no listing lag). */
  readonly tags: (repository: string) => Effect.Effect<ReadonlyMap<string, Digest.Digest>>
  /** Replace a stored blob's bytes without changing its address, to emulate storage corruption. */
  readonly corruptBlob: (repository: string, digest: Digest.Digest, bytes: Uint8Array) => Effect.Effect<void>
  /** Replace a stored manifest's bytes without changing its address. */
  readonly corruptManifest: (repository: string, digest: Digest.Digest, bytes: Uint8Array) => Effect.Effect<void>
}

/**
 * @since 0.1.0
 * @category tags
 */
export class MemoryRegistryControl extends Context.Tag("oras-state/MemoryRegistryControl")<
  MemoryRegistryControl,
  Control
>() {}

/**
 * Fail the first `times` requests matching `when` with `fault`.
 *
 * @since 0.1.0
 * @category faults
 */
export const failFirst = (
  times: number,
  fault: Fault,
  when: (request: RequestRecord) => boolean = () => true
): FaultPlan => {
  let remaining = times
  return (request) => {
    if (remaining <= 0 || !when(request)) return undefined
    remaining--
    return fault
  }
}

interface StoredManifest {
  readonly mediaType: string
  bytes: Uint8Array
}

interface TagHistory {
  readonly createdAt: number
  deletedAt: number | undefined
}

interface Repo {
  readonly manifests: Map<Digest.Digest, StoredManifest>
  readonly tags: Map<string, Digest.Digest>
  readonly blobs: Map<Digest.Digest, Uint8Array>
  readonly tagHistory: Map<string, TagHistory>
}

const isTransientStatus = (status: number) => status === 408 || status === 429 || (status >= 500 && status !== 501)

const httpRequestsOf = (operation: Operation): number => (operation === "putBlob" ? 2 : 1)

/**
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: Options = {}) =>
  Effect.gen(function*() {
    const repos = new Map<string, Repo>()
    const log: Array<RequestRecord> = []
    let faults = options.faults
    let quirks: Quirks = { ...options.quirks }
    const policy = Retry.schedule({ maxRetries: 0, ...options.retry })
    const defaultPageSize = options.defaultTagPageSize ?? 100

    const repoOf = (name: string): Repo => {
      let repo = repos.get(name)
      if (repo === undefined) {
        repo = { manifests: new Map(), tags: new Map(), blobs: new Map(), tagHistory: new Map() }
        repos.set(name, repo)
      }
      return repo
    }

    // One registry request: record it, consult the fault plan, run the operation atomically.
    const request = <A, E>(
      operation: Operation,
      repository: string,
      reference: string | undefined,
      run: () => Effect.Effect<A, E>
    ): Effect.Effect<A, E | TransientRegistry | RegistryError> =>
      Effect.suspend(() => {
        const record: RequestRecord = { operation, repository, reference, httpRequests: httpRequestsOf(operation) }
        log.push(record)
        const fault = faults?.(record)
        if (fault === undefined) return run()
        const failure = faultError(operation, fault)
        return fault.responseLost === true ? Effect.zipRight(run(), Effect.fail(failure)) : Effect.fail(failure)
      })

    const faultError = (operation: Operation, fault: Fault) =>
      isTransientStatus(fault.status)
        ? new TransientRegistry({
          operation,
          status: fault.status,
          reason: "injected fault",
          ...(fault.retryAfterMillis === undefined ? {} : { retryAfterMillis: fault.retryAfterMillis })
        })
        : new RegistryError({ operation, status: fault.status, reason: "injected fault" })

    const retrying = <A, E, R>(self: Effect.Effect<A, E, R>) => Retry.retryTransient(self, policy)

    const lookup = (repo: Repo, reference: string): Option.Option<[Digest.Digest, StoredManifest]> => {
      const digest = Reference.isDigestReference(reference) ? reference as Digest.Digest : repo.tags.get(reference)
      if (digest === undefined) return Option.none()
      const manifest = repo.manifests.get(digest)
      return manifest === undefined ? Option.none() : Option.some([digest, manifest])
    }

    const setTag = (repo: Repo, tag: string, digest: Digest.Digest, now: number) => {
      const wasListed = repo.tags.has(tag)
      repo.tags.set(tag, digest)
      if (!wasListed) repo.tagHistory.set(tag, { createdAt: now, deletedAt: undefined })
    }

    const removeTag = (repo: Repo, tag: string, now: number) => {
      repo.tags.delete(tag)
      const history = repo.tagHistory.get(tag)
      if (history !== undefined) history.deletedAt = now
    }

    const resolveManifest: Service["resolveManifest"] = (repository, reference) =>
      Effect.zipRight(
        Effect.zip(Reference.validateRepository(repository), Reference.validateReference(reference)),
        request("resolveManifest", repository, reference, () =>
          Effect.sync(() =>
            lookup(repoOf(repository), reference).pipe(
              Option.map(([digest, m]) => ({ digest, size: m.bytes.byteLength, mediaType: m.mediaType }))
            )
          ))
      ).pipe(retrying)

    const getManifest: Service["getManifest"] = (repository, reference) =>
      Effect.zipRight(
        Effect.zip(Reference.validateRepository(repository), Reference.validateReference(reference)),
        request("getManifest", repository, reference, () =>
          Option.match(lookup(repoOf(repository), reference), {
            onNone: () => Effect.succeedNone,
            onSome: ([digest, m]) =>
              Verify.verifyManifestBytes(m.bytes, [digest]).pipe(
                Effect.map((d) => Option.some({ digest: d, mediaType: m.mediaType, bytes: m.bytes.slice() }))
              )
          }))
      ).pipe(retrying)

    const putManifest: Service["putManifest"] = (repository, reference, manifest) => {
      const put = Effect.zipRight(
        Effect.zip(Reference.validateRepository(repository), Reference.validateReference(reference)),
        request("putManifest", repository, reference, () =>
          Effect.gen(function*() {
            const repo = repoOf(repository)
            const bytes = manifest.bytes.slice()
            const digest = Digest.sha256(bytes)
            if (bytes.byteLength > maxManifestBytes) {
              return yield* new RegistryError({
                operation: "putManifest",
                status: 400,
                code: "MANIFEST_INVALID",
                reason: "http: request body too large"
              })
            }
            if (Reference.isDigestReference(reference) && reference !== digest) {
              return yield* new RegistryError({
                operation: "putManifest",
                status: 400,
                code: "DIGEST_INVALID",
                reason: "provided digest did not match uploaded content"
              })
            }
            const missing = yield* referencedBlobs(bytes, manifest.mediaType).pipe(
              Effect.map((digests) => digests.filter((d) => !repo.blobs.has(d) && !repo.manifests.has(d)))
            )
            if (missing.length > 0) {
              return yield* new RegistryError({
                operation: "putManifest",
                status: 400,
                code: "MANIFEST_BLOB_UNKNOWN",
                reason: `blob unknown to registry: ${missing.join(", ")}`
              })
            }
            repo.manifests.set(digest, { mediaType: manifest.mediaType, bytes })
            if (!Reference.isDigestReference(reference)) setTag(repo, reference, digest, yield* Clock.currentTimeMillis)
            return digest
          }))
      )
      // Only a PUT by digest is idempotent; a tag PUT is left to the caller to observe.
      return Reference.isDigestReference(reference) ? retrying(put) : put
    }

    const deleteManifest: Service["deleteManifest"] = (repository, reference) =>
      Effect.zipRight(
        Effect.zip(Reference.validateRepository(repository), Reference.validateReference(reference)),
        request("deleteManifest", repository, reference, () =>
          Effect.gen(function*() {
            if (quirks.deleteUnsupported === true) {
              return yield* new Unsupported({
                operation: "deleteManifest",
                status: 405,
                code: "UNSUPPORTED",
                reason: "The operation is unsupported."
              })
            }
            const repo = repoOf(repository)
            const now = yield* Clock.currentTimeMillis
            if (!Reference.isDigestReference(reference)) {
              if (quirks.tagDeleteUnsupported === true) {
                return yield* new Unsupported({
                  operation: "deleteManifest",
                  status: 400,
                  code: "DIGEST_INVALID",
                  reason: "deletion by tag is not supported by this registry"
                })
              }
              if (!repo.tags.has(reference)) return false
              removeTag(repo, reference, now)
              return true
            }
            const digest = reference as Digest.Digest
            if (!repo.manifests.delete(digest)) return false
            for (const [tag, target] of repo.tags) if (target === digest) removeTag(repo, tag, now)
            return true
          }))
      ).pipe((eff) => (Reference.isDigestReference(reference) ? retrying(eff) : eff))

    const blobExists: Service["blobExists"] = (repository, digest) =>
      Effect.zipRight(
        Effect.zip(Reference.validateRepository(repository), Reference.validateDigest(digest)),
        request("blobExists", repository, digest, () =>
          Effect.sync(() => Option.map(Option.fromNullable(repoOf(repository).blobs.get(digest)), (b) => b.byteLength)))
      ).pipe(retrying)

    // One GET of a blob: a copy of the stored bytes (verified by the caller, as a client would).
    const fetchBlob = (repository: string, blob: BlobRef) =>
      Effect.zipRight(
        Effect.zip(Reference.validateRepository(repository), Reference.validateDigest(blob.digest)),
        request("getBlob", repository, blob.digest, () =>
          Effect.suspend(() => {
            const bytes = repoOf(repository).blobs.get(blob.digest)
            return bytes === undefined
              ? Effect.fail(
                new RegistryError({
                  operation: "getBlob",
                  status: 404,
                  code: "BLOB_UNKNOWN",
                  reason: `blob unknown to registry: ${blob.digest}`
                })
              )
              : Effect.succeed(bytes.slice())
          }))
      )

    const getBlob: Service["getBlob"] = (repository, blob) =>
      Stream.unwrap(
        fetchBlob(repository, blob).pipe(
          retrying,
          Effect.map((bytes) =>
            Stream.fromIterable(chunksOf(bytes, 64 * 1024)).pipe(Verify.verifyBlobStream(blob))
          )
        )
      )

    const getBlobBytes: Service["getBlobBytes"] = (repository, blob) =>
      fetchBlob(repository, blob).pipe(
        Effect.flatMap((bytes) => Verify.verifyBlobBytes(bytes, blob)),
        retrying
      )

    const putBlob: Service["putBlob"] = (repository, blob, body) =>
      Effect.zipRight(
        Effect.zip(Reference.validateRepository(repository), Reference.validateDigest(blob.digest)),
        request("putBlob", repository, blob.digest, () =>
          Effect.gen(function*() {
            const bytes = concat(body)
            const actual = Digest.sha256(bytes)
            if (actual !== blob.digest || bytes.byteLength !== blob.size) {
              return yield* new RegistryError({
                operation: "putBlob",
                status: 400,
                code: "DIGEST_INVALID",
                reason: "provided digest did not match uploaded content"
              })
            }
            repoOf(repository).blobs.set(blob.digest, bytes)
          }))
      ).pipe(retrying)

    const listedTags = (repo: Repo, now: number): Array<string> => {
      const lag = quirks.tagListingLag === undefined ? 0 : Duration.toMillis(quirks.tagListingLag)
      if (lag <= 0) return [...repo.tags.keys()]
      const asOf = now - lag
      const listed: Array<string> = []
      for (const [tag, history] of repo.tagHistory) {
        if (history.createdAt <= asOf && (history.deletedAt === undefined || history.deletedAt > asOf)) listed.push(tag)
      }
      return listed
    }

    // Nothing to open here: the session is the repository name, the upload happens at `finish`.
    const startBlobUpload: Service["startBlobUpload"] = (repository) =>
      Effect.as(Reference.validateRepository(repository), { finish: (blob, body) => putBlob(repository, blob, body) })

    // The pages of a tag listing, each one request; the cursor is the last tag of the page before.
    const tagPages = (repository: string, listOptions: ListTagsOptions | undefined) => {
      const pageSize = Math.max(1, Math.floor(listOptions?.pageSize ?? defaultPageSize))
      const page = (last: string | undefined) =>
        request("listTags", repository, last, () =>
          Effect.map(Clock.currentTimeMillis, (now): Pages.Page<string, string | undefined> => {
            const repo = repos.get(repository)
            if (repo === undefined) return [[], Option.none()]
            const all = listedTags(repo, now)
            if (quirks.ignoresTagPageSize === true) return [all, Option.none()]
            const sorted = all.sort()
            const start = last === undefined ? 0 : sorted.findIndex((t) => t > last)
            const tags = start < 0 ? [] : sorted.slice(start, start + pageSize)
            const more = start >= 0 && start + pageSize < sorted.length
            return [tags, more ? Option.some(tags[tags.length - 1]) : Option.none()]
          })).pipe(retrying)
      return { first: undefined as string | undefined, page }
    }

    const listTags: Service["listTags"] = (repository, listOptions) => {
      const { first, page } = tagPages(repository, listOptions)
      return Stream.unwrap(Effect.as(Reference.validateRepository(repository), Pages.stream(first, page)))
    }

    const listAllTags: Service["listAllTags"] = (repository, listOptions) => {
      const { first, page } = tagPages(repository, listOptions)
      return Effect.zipRight(Reference.validateRepository(repository), Pages.collect(first, page))
    }

    // `Registry.<operation>` spans and byte counts, as the other layers emit them.
    const service: Service = instrumentRegistry({
      location: "memory",
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
    }, { spans: true })

    const control: Control = {
      requests: Effect.sync(() => log.slice()),
      clearRequests: Effect.sync(() => {
        log.length = 0
      }),
      setFaults: (plan) =>
        Effect.sync(() => {
          faults = plan
        }),
      setQuirks: (next) =>
        Effect.sync(() => {
          quirks = { ...next }
        }),
      tags: (repository) => Effect.sync(() => new Map(repos.get(repository)?.tags ?? [])),
      corruptBlob: (repository, digest, bytes) =>
        Effect.sync(() => {
          repoOf(repository).blobs.set(digest, bytes.slice())
        }),
      corruptManifest: (repository, digest, bytes) =>
        Effect.sync(() => {
          const stored = repoOf(repository).manifests.get(digest)
          if (stored !== undefined) stored.bytes = bytes.slice()
        })
    }
    return { service, control } as const
  })

/**
 * A fresh, empty registry per layer build, with its `MemoryRegistryControl`.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: Options = {}): Layer.Layer<Registry | MemoryRegistryControl> =>
  Layer.effectContext(
    Effect.map(make(options), ({ control, service }) =>
      Context.make(Registry, service).pipe(Context.add(MemoryRegistryControl, control)))
  )

// The digests a manifest references (config, layers, index entries), which must exist before it
// may be stored — as a real registry enforces (MANIFEST_BLOB_UNKNOWN).
const referencedBlobs = (
  bytes: Uint8Array,
  mediaType: string
): Effect.Effect<ReadonlyArray<Digest.Digest>, RegistryError> =>
  Effect.try({
    try: () => {
      const json: unknown = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes))
      if (typeof json !== "object" || json === null) throw new Error("not an object")
      const m = json as { mediaType?: unknown; config?: { digest?: unknown }; layers?: unknown; manifests?: unknown }
      if (m.mediaType !== undefined && m.mediaType !== mediaType) throw new Error("mediaType mismatch")
      const digests: Array<unknown> = []
      if (m.config !== undefined) digests.push(m.config.digest)
      for (const list of [m.layers, m.manifests]) {
        if (list === undefined) continue
        if (!Array.isArray(list)) throw new Error("descriptor list is not an array")
        for (const d of list) digests.push((d as { digest?: unknown } | null)?.digest)
      }
      if (!digests.every(Digest.isDigest)) throw new Error("invalid descriptor digest")
      return digests as ReadonlyArray<Digest.Digest>
    },
    catch: (cause) =>
      new RegistryError({
        operation: "putManifest",
        status: 400,
        code: "MANIFEST_INVALID",
        reason: `manifest invalid: ${cause instanceof Error ? cause.message : "unparseable"}`
      })
  })

const concat = (body: BlobBody): Uint8Array => {
  if (body instanceof Uint8Array) return body.slice()
  const out = new Uint8Array(body.reduce((n, c) => n + c.byteLength, 0))
  let offset = 0
  for (const chunk of body) {
    out.set(chunk, offset)
    offset += chunk.byteLength
  }
  return out
}

const chunksOf = (bytes: Uint8Array, size: number): Array<Uint8Array> => {
  const out: Array<Uint8Array> = []
  for (let i = 0; i < bytes.byteLength; i += size) out.push(bytes.subarray(i, i + size))
  return out
}
