/**
 * The `Registry` service: the OCI Distribution operations the state store needs, and nothing about
 * Terraform. It is deliberately small and protocol-shaped so that its implementations
 * (`HttpRegistry`, `MemoryRegistry`, `OciLayoutRegistry`) stay interchangeable and one behavioural
 * suite runs against all of them.
 *
 * Contract shared by every implementation:
 * - names are validated client-side (`InvalidReference`) before anything is sent;
 * - manifests are stored and returned byte-for-byte; returned manifests and blobs are verified
 *   against their digest and size (`CorruptState` otherwise), so callers never see unverified bytes
 *   as success;
 * - absent manifests/blobs are `Option.none()`, never errors;
 * - only idempotent operations are retried (`TransientRegistry` only): reads, uploads of
 *   content-addressed blobs, manifest PUT *by digest* and DELETE by digest. A manifest PUT to a tag
 *   is never retried blindly: the caller observes the tag instead (a lost response may have landed).
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import type * as Effect from "effect/Effect"
import type * as Option from "effect/Option"
import type * as Stream from "effect/Stream"
import type { Digest } from "./Digest.js"
import type { CorruptState, RegistryFailure, Unsupported } from "./Errors.js"

/**
 * @since 0.1.0
 * @category media types
 */
export const MediaType = {
  ociManifest: "application/vnd.oci.image.manifest.v1+json",
  ociIndex: "application/vnd.oci.image.index.v1+json",
  dockerManifest: "application/vnd.docker.distribution.manifest.v2+json",
  dockerManifestList: "application/vnd.docker.distribution.manifest.list.v2+json",
  ociEmpty: "application/vnd.oci.empty.v1+json"
} as const

/**
 * Sent on every manifest GET/HEAD: distribution 2.8 answers 404 for an OCI manifest unless the
 * Accept list names its media type (even when fetching by digest).
 *
 * @since 0.1.0
 * @category media types
 */
export const manifestAccept: string = [
  MediaType.ociManifest,
  MediaType.ociIndex,
  MediaType.dockerManifest,
  MediaType.dockerManifestList
].join(", ")

/**
 * Registries cap manifest bodies at 4 MiB (distribution, zot); we refuse to send or read more.
 *
 * @since 0.1.0
 * @category constants
 */
export const maxManifestBytes = 4 * 1024 * 1024

/**
 * What a manifest HEAD tells: its digest, size and media type.
 *
 * @since 0.1.0
 * @category models
 */
export interface ManifestDescriptor {
  readonly digest: Digest
  readonly size: number
  readonly mediaType: string
}

/**
 * A manifest as stored: exact bytes (their sha256 is `digest`) and media type.
 *
 * @since 0.1.0
 * @category models
 */
export interface Manifest {
  readonly digest: Digest
  readonly mediaType: string
  readonly bytes: Uint8Array
}

/**
 * A blob to fetch or store: its content address and exact size.
 *
 * @since 0.1.0
 * @category models
 */
export interface BlobRef {
  readonly digest: Digest
  readonly size: number
}

/**
 * Blob content to upload: one buffer, or chunks (e.g. gzip output) sent in order without joining.
 *
 * @since 0.1.0
 * @category models
 */
export type BlobBody = Uint8Array | ReadonlyArray<Uint8Array>

/**
 * An upload session opened by `startBlobUpload`. A session that is never finished is left to the
 * registry's own clean-up of stale uploads.
 *
 * @since 0.1.0
 * @category models
 */
export interface BlobUpload {
  /**
   * Send the blob and close the session. A transient failure is retried as a whole new upload.
   */
  readonly finish: (blob: BlobRef, body: BlobBody) => Effect.Effect<void, RegistryFailure>
}

/**
 * @since 0.1.0
 * @category models
 */
export interface ListTagsOptions {
  /** Page size asked with `n=`; registries may ignore it (distribution 2.8 does). */
  readonly pageSize?: number | undefined
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Service {
  /** Where this registry lives, for messages and spans (no credentials). */
  readonly location: string
  /** HEAD a manifest by tag or digest. */
  readonly resolveManifest: (
    repository: string,
    reference: string
  ) => Effect.Effect<Option.Option<ManifestDescriptor>, RegistryFailure | CorruptState>
  /** GET a manifest by tag or digest; bytes verified against the digest the registry reports. */
  readonly getManifest: (
    repository: string,
    reference: string
  ) => Effect.Effect<Option.Option<Manifest>, RegistryFailure | CorruptState>
  /**
   * PUT a manifest at a tag or at its digest; returns the digest of `bytes`. Fails with
   * `CorruptState` when the registry reports another digest than the one of the bytes sent.
   */
  readonly putManifest: (
    repository: string,
    reference: string,
    manifest: { readonly mediaType: string; readonly bytes: Uint8Array }
  ) => Effect.Effect<Digest, RegistryFailure | CorruptState>
  /**
   * DELETE a manifest by digest (removes every tag on it) or by tag (untag, where supported).
   * `true` when deleted, `false` when it was not there. `Unsupported` on 405 or when the registry
   * refuses deletion by tag.
   */
  readonly deleteManifest: (
    repository: string,
    reference: string
  ) => Effect.Effect<boolean, RegistryFailure | Unsupported>
  /** HEAD a blob: its size when present. */
  readonly blobExists: (repository: string, digest: Digest) => Effect.Effect<Option.Option<number>, RegistryFailure>
  /**
   * Stream a blob. The stream fails with `CorruptState` if the bytes do not hash to `blob.digest`
   * or their count differs from `blob.size` (checked while streaming, before the last chunk is
   * released), and with `RegistryError` (404 `BLOB_UNKNOWN`) when the blob is missing.
   */
  readonly getBlob: (repository: string, blob: BlobRef) => Stream.Stream<Uint8Array, RegistryFailure | CorruptState>
  /**
   * GET a whole blob into one buffer of `blob.size` bytes, returned only once its sha256 and size
   * were checked (`CorruptState` otherwise; `RegistryError` 404 `BLOB_UNKNOWN` when missing).
   * What a reader that wants the bytes in memory anyway should use: no stream step per network
   * read, no second copy, and the hash computed while the body arrives.
   */
  readonly getBlobBytes: (repository: string, blob: BlobRef) => Effect.Effect<Uint8Array, RegistryFailure | CorruptState>
  /**
   * Upload a blob monolithically (POST + PUT). No HEAD first: callers that expect the blob to exist
   * already ask `blobExists`; re-uploading identical content is harmless.
   */
  readonly putBlob: (repository: string, blob: BlobRef, body: BlobBody) => Effect.Effect<void, RegistryFailure>
  /**
   * Open an upload session before the blob is known (OCI: the POST of an upload), so that it is on
   * the wire while the caller is still hashing or compressing; `finish` sends the blob (the PUT).
   * `putBlob` is both in one.
   */
  readonly startBlobUpload: (repository: string) => Effect.Effect<BlobUpload, RegistryFailure>
  /** Every tag of the repository (empty when the repository does not exist), pages followed lazily. */
  readonly listTags: (repository: string, options?: ListTagsOptions) => Stream.Stream<string, RegistryFailure>
  /**
   * The tags `listTags` yields, all pages read, at once: for callers that need the whole list (lock
   * candidates, version scans), without the cost of running a stream.
   */
  readonly listAllTags: (repository: string, options?: ListTagsOptions) => Effect.Effect<ReadonlyArray<string>, RegistryFailure>
}

/**
 * @since 0.1.0
 * @category tags
 */
export class Registry extends Context.Tag("oras-state/Registry")<Registry, Service>() {}
