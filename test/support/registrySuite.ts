/**
 * One behavioural suite for every `Registry` implementation: the same assertions run against
 * `MemoryRegistry` and against `HttpRegistry` on a real distribution 2.8 (plain, htpasswd, token).
 */
import { describe, expect, it } from "@effect/vitest"
import { Chunk, Effect, Layer, Option, Stream } from "effect"
import * as Digest from "../../src/Digest.js"
import { MediaType, Registry } from "../../src/Registry.js"

export interface SuiteOptions {
  /** Fresh layer per test (a fresh registry, or a fresh client to a shared one). */
  readonly layer: () => Layer.Layer<Registry, unknown>
  /** Whether DELETE by tag is supported (distribution 2.8: no). */
  readonly tagDelete: "supported" | "unsupported"
  /** A repository name unique to this test. */
  readonly repository: (name: string) => string
}

const encoder = new TextEncoder()
export const bytes = (s: string): Uint8Array => encoder.encode(s)

export const emptyConfig = {
  mediaType: MediaType.ociEmpty,
  digest: Digest.emptyJsonDigest,
  size: 2,
  data: "e30="
} as const

/** An OCI artifact manifest with one layer, as the state store writes them. */
export const artifactManifest = (layer: { digest: string; size: number }, annotations: Record<string, string> = {}) =>
  bytes(JSON.stringify({
    schemaVersion: 2,
    mediaType: MediaType.ociManifest,
    artifactType: "application/vnd.example.test.v1",
    config: emptyConfig,
    layers: [{ mediaType: "application/vnd.example.layer.v1", digest: layer.digest, size: layer.size }],
    annotations
  }))

/** Upload the empty config and a layer blob, then PUT a manifest referencing them at `reference`. */
export const pushArtifact = (repository: string, reference: string, content: string, annotations = {}) =>
  Effect.gen(function*() {
    const registry = yield* Registry
    const data = bytes(content)
    const layer = { digest: Digest.sha256(data), size: data.byteLength }
    yield* registry.putBlob(repository, { digest: Digest.emptyJsonDigest, size: 2 }, bytes("{}"))
    yield* registry.putBlob(repository, layer, data)
    const manifest = artifactManifest(layer, annotations)
    const digest = yield* registry.putManifest(repository, reference, { mediaType: MediaType.ociManifest, bytes: manifest })
    return { digest, manifest, layer, data }
  })

// A blob of `size` bytes in a repeating pattern (`step` varies it), and its descriptor.
const patternedBlob = (size: number, step: number) => {
  const data = new Uint8Array(size).map((_, i) => (i * step) % 251)
  return { data, blob: { digest: Digest.sha256(data), size } }
}

const collect = <E>(stream: Stream.Stream<Uint8Array, E>) =>
  Stream.runCollect(stream).pipe(Effect.map((chunks) => Buffer.concat(Chunk.toArray(chunks))))

export const registryBehaviour = (options: SuiteOptions) => {
  const run = <A, E>(effect: Effect.Effect<A, E, Registry>) => Effect.provide(effect, options.layer())

  describe("manifests", () => {
    it.live("PUT by tag then GET by tag and by digest returns the exact bytes", () =>
      run(Effect.gen(function*() {
        const registry = yield* Registry
        const repo = options.repository("manifest-roundtrip")
        const pushed = yield* pushArtifact(repo, "v1", "hello state", { "org.example": "a" })
        expect(pushed.digest).toBe(Digest.sha256(pushed.manifest))
        const byTag = yield* registry.getManifest(repo, "v1")
        expect(Option.isSome(byTag)).toBe(true)
        const got = Option.getOrThrow(byTag)
        expect(got.digest).toBe(pushed.digest)
        expect(got.mediaType).toBe(MediaType.ociManifest)
        expect(Buffer.from(got.bytes).equals(Buffer.from(pushed.manifest))).toBe(true)
        const byDigest = Option.getOrThrow(yield* registry.getManifest(repo, pushed.digest))
        expect(Buffer.from(byDigest.bytes).equals(Buffer.from(pushed.manifest))).toBe(true)
      })))

    it.live("resolve (HEAD) gives digest, size and media type; absent is None", () =>
      run(Effect.gen(function*() {
        const registry = yield* Registry
        const repo = options.repository("manifest-resolve")
        const pushed = yield* pushArtifact(repo, "current", "resolve me")
        const resolved = Option.getOrThrow(yield* registry.resolveManifest(repo, "current"))
        expect(resolved).toEqual({ digest: pushed.digest, size: pushed.manifest.byteLength, mediaType: MediaType.ociManifest })
        expect(yield* registry.resolveManifest(repo, "missing")).toEqual(Option.none())
        expect(yield* registry.getManifest(repo, "missing")).toEqual(Option.none())
        expect(yield* registry.resolveManifest(options.repository("never-created"), "x")).toEqual(Option.none())
      })))

    it.live("moving a tag keeps the old manifest reachable by digest (last writer wins)", () =>
      run(Effect.gen(function*() {
        const registry = yield* Registry
        const repo = options.repository("manifest-move")
        const first = yield* pushArtifact(repo, "latest", "one")
        const second = yield* pushArtifact(repo, "latest", "two")
        expect(Option.getOrThrow(yield* registry.resolveManifest(repo, "latest")).digest).toBe(second.digest)
        expect(Option.isSome(yield* registry.getManifest(repo, first.digest))).toBe(true)
      })))

    it.live("PUT by digest stores an untagged manifest", () =>
      run(Effect.gen(function*() {
        const registry = yield* Registry
        const repo = options.repository("manifest-by-digest")
        const pushed = yield* pushArtifact(repo, "seed", "by digest")
        const other = artifactManifest(pushed.layer, { variant: "untagged" })
        const digest = yield* registry.putManifest(repo, Digest.sha256(other), {
          mediaType: MediaType.ociManifest,
          bytes: other
        })
        expect(digest).toBe(Digest.sha256(other))
        expect(Option.isSome(yield* registry.getManifest(repo, digest))).toBe(true)
        const tags = yield* Stream.runCollect(registry.listTags(repo))
        expect(Chunk.toArray(tags)).toEqual(["seed"])
      })))

    it.live("a manifest referencing a missing blob is refused (MANIFEST_BLOB_UNKNOWN)", () =>
      run(Effect.gen(function*() {
        const registry = yield* Registry
        const repo = options.repository("manifest-missing-blob")
        yield* registry.putBlob(repo, { digest: Digest.emptyJsonDigest, size: 2 }, bytes("{}"))
        const ghost = bytes("not uploaded")
        const manifest = artifactManifest({ digest: Digest.sha256(ghost), size: ghost.byteLength })
        const error = yield* Effect.flip(registry.putManifest(repo, "t", { mediaType: MediaType.ociManifest, bytes: manifest }))
        expect(error._tag).toBe("RegistryError")
        expect(error._tag === "RegistryError" && error.code).toBe("MANIFEST_BLOB_UNKNOWN")
      })))

    it.live("invalid names are refused before any request", () =>
      run(Effect.gen(function*() {
        const registry = yield* Registry
        const badRepo = yield* Effect.flip(registry.getManifest("Upper/Case", "v1"))
        expect(badRepo._tag).toBe("InvalidReference")
        const badTag = yield* Effect.flip(registry.resolveManifest(options.repository("x"), ".hidden"))
        expect(badTag._tag).toBe("InvalidReference")
        const longTag = yield* Effect.flip(registry.resolveManifest(options.repository("x"), "a".repeat(129)))
        expect(longTag._tag).toBe("InvalidReference")
        const badDigest = yield* Effect.flip(registry.blobExists(options.repository("x"), "sha256:zz" as Digest.Digest))
        expect(badDigest._tag).toBe("InvalidReference")
      })))
  })

  describe("blobs", () => {
    it.live("upload, HEAD and streamed GET with verification", () =>
      run(Effect.gen(function*() {
        const registry = yield* Registry
        const repo = options.repository("blob-roundtrip")
        const { blob, data } = patternedBlob(300_000, 7)
        expect(yield* registry.blobExists(repo, blob.digest)).toEqual(Option.none())
        yield* registry.putBlob(repo, blob, data)
        expect(yield* registry.blobExists(repo, blob.digest)).toEqual(Option.some(data.byteLength))
        const got = yield* collect(registry.getBlob(repo, blob))
        expect(got.equals(Buffer.from(data))).toBe(true)
      })))

    it.live("upload from chunks (no joining) and an empty blob", () =>
      run(Effect.gen(function*() {
        const registry = yield* Registry
        const repo = options.repository("blob-chunks")
        const chunks = [bytes("abc"), bytes("def"), bytes("ghi")]
        const blob = { digest: Digest.sha256(chunks), size: 9 }
        yield* registry.putBlob(repo, blob, chunks)
        expect((yield* collect(registry.getBlob(repo, blob))).toString()).toBe("abcdefghi")
        const empty = { digest: Digest.sha256(new Uint8Array(0)), size: 0 }
        yield* registry.putBlob(repo, empty, new Uint8Array(0))
        expect((yield* collect(registry.getBlob(repo, empty))).byteLength).toBe(0)
      })))

    it.live("a blob whose content does not match its digest is refused on upload", () =>
      run(Effect.gen(function*() {
        const registry = yield* Registry
        const repo = options.repository("blob-bad-upload")
        const claimed = Digest.sha256(bytes("claimed"))
        const error = yield* Effect.flip(registry.putBlob(repo, { digest: claimed, size: 6 }, bytes("actual")))
        expect(error._tag).toBe("RegistryError")
        expect(yield* registry.blobExists(repo, claimed)).toEqual(Option.none())
      })))

    it.live("reading with a wrong digest or size fails with CorruptState", () =>
      run(Effect.gen(function*() {
        const registry = yield* Registry
        const repo = options.repository("blob-verify")
        const data = bytes("verified content")
        const blob = { digest: Digest.sha256(data), size: data.byteLength }
        yield* registry.putBlob(repo, blob, data)
        const wrongSize = yield* Effect.flip(collect(registry.getBlob(repo, { ...blob, size: blob.size + 5 })))
        expect(wrongSize._tag).toBe("CorruptState")
        const smaller = yield* Effect.flip(collect(registry.getBlob(repo, { ...blob, size: blob.size - 1 })))
        expect(smaller._tag).toBe("CorruptState")
      })))

    it.live("startBlobUpload: a session opened first, the blob sent later; a wrong digest is refused; an abandoned session is harmless", () =>
      run(Effect.gen(function*() {
        const registry = yield* Registry
        const repo = options.repository("blob-session")
        const abandoned = yield* registry.startBlobUpload(repo)
        const upload = yield* registry.startBlobUpload(repo)
        const chunks = [bytes("opened "), bytes("before "), bytes("hashing")]
        const blob = { digest: Digest.sha256(chunks), size: 21 }
        yield* upload.finish(blob, chunks)
        expect((yield* collect(registry.getBlob(repo, blob))).toString()).toBe("opened before hashing")
        const claimed = Digest.sha256(bytes("claimed"))
        const refused = yield* Effect.flip((yield* registry.startBlobUpload(repo)).finish({ digest: claimed, size: 6 }, bytes("actual")))
        expect(refused._tag).toBe("RegistryError")
        expect(yield* registry.blobExists(repo, claimed)).toEqual(Option.none())
        expect(abandoned).toBeDefined()
        const invalid = yield* Effect.flip(registry.startBlobUpload("Not/A/Valid/Name"))
        expect(invalid._tag).toBe("InvalidReference")
      })))

    it.live("getBlobBytes: the whole blob in one buffer, verified; wrong size, digest or a missing blob fail", () =>
      run(Effect.gen(function*() {
        const registry = yield* Registry
        const repo = options.repository("blob-bytes")
        // Larger than one network read, so that the body arrives in several chunks.
        const { blob, data } = patternedBlob(700_000, 13)
        yield* registry.putBlob(repo, blob, data)
        const got = yield* registry.getBlobBytes(repo, blob)
        expect(got.byteLength).toBe(data.byteLength)
        expect(Buffer.from(got).equals(Buffer.from(data))).toBe(true)
        const empty = { digest: Digest.sha256(new Uint8Array(0)), size: 0 }
        yield* registry.putBlob(repo, empty, new Uint8Array(0))
        expect((yield* registry.getBlobBytes(repo, empty)).byteLength).toBe(0)
        for (const size of [blob.size + 5, blob.size - 1]) {
          const error = yield* Effect.flip(registry.getBlobBytes(repo, { ...blob, size }))
          expect(error._tag).toBe("CorruptState")
        }
        const other = Digest.sha256(bytes("other"))
        yield* registry.putBlob(repo, { digest: other, size: 5 }, bytes("other"))
        const swapped = yield* Effect.flip(registry.getBlobBytes(repo, { digest: other, size: data.byteLength }))
        expect(swapped._tag).toBe("CorruptState")
        const ghost = yield* Effect.flip(registry.getBlobBytes(repo, { digest: Digest.sha256(bytes("ghost")), size: 5 }))
        expect(ghost).toMatchObject({ _tag: "RegistryError", code: "BLOB_UNKNOWN" })
      })))

    it.live("a missing blob fails with BLOB_UNKNOWN", () =>
      run(Effect.gen(function*() {
        const registry = yield* Registry
        const repo = options.repository("blob-missing")
        yield* pushArtifact(repo, "seed", "x")
        const ghost = bytes("ghost")
        const error = yield* Effect.flip(collect(registry.getBlob(repo, { digest: Digest.sha256(ghost), size: 5 })))
        expect(error).toMatchObject({ _tag: "RegistryError", code: "BLOB_UNKNOWN" })
      })))
  })

  describe("tags", () => {
    it.live("lists every tag across pages; unknown repository lists nothing", () =>
      run(Effect.gen(function*() {
        const registry = yield* Registry
        const repo = options.repository("tags-pages")
        const first = yield* pushArtifact(repo, "t-00", "tags")
        const names = Array.from({ length: 25 }, (_, i) => `t-${String(i).padStart(2, "0")}`)
        for (const name of names.slice(1)) {
          yield* registry.putManifest(repo, name, { mediaType: MediaType.ociManifest, bytes: first.manifest })
        }
        const listed = Chunk.toArray(yield* Stream.runCollect(registry.listTags(repo, { pageSize: 7 })))
        expect([...listed].sort()).toEqual(names)
        expect(new Set(listed).size).toBe(listed.length)
        const none = yield* Stream.runCollect(registry.listTags(options.repository("tags-nothing-here")))
        expect(Chunk.size(none)).toBe(0)
        // All at once: the same tags, pages followed the same way.
        expect([...(yield* registry.listAllTags(repo, { pageSize: 7 }))].sort()).toEqual(names)
        expect([...(yield* registry.listAllTags(repo))].sort()).toEqual(names)
        expect(yield* registry.listAllTags(options.repository("tags-nothing-here"))).toEqual([])
        expect((yield* Effect.flip(registry.listAllTags("Not/A/Valid/Name")))._tag).toBe("InvalidReference")
      })))
  })

  describe("delete", () => {
    it.live("DELETE by digest removes the manifest and every tag on it", () =>
      run(Effect.gen(function*() {
        const registry = yield* Registry
        const repo = options.repository("delete-digest")
        const pushed = yield* pushArtifact(repo, "a", "delete me")
        yield* registry.putManifest(repo, "b", { mediaType: MediaType.ociManifest, bytes: pushed.manifest })
        const keep = yield* pushArtifact(repo, "keep", "keep me")
        expect(yield* registry.deleteManifest(repo, pushed.digest)).toBe(true)
        expect(yield* registry.resolveManifest(repo, "a")).toEqual(Option.none())
        expect(yield* registry.resolveManifest(repo, "b")).toEqual(Option.none())
        expect(Option.getOrThrow(yield* registry.resolveManifest(repo, "keep")).digest).toBe(keep.digest)
        expect(Chunk.toArray(yield* Stream.runCollect(registry.listTags(repo)))).toEqual(["keep"])
        expect(yield* registry.deleteManifest(repo, pushed.digest)).toBe(false)
      })))

    it.live(`DELETE by tag is ${options.tagDelete}`, () =>
      run(Effect.gen(function*() {
        const registry = yield* Registry
        const repo = options.repository("delete-tag")
        const pushed = yield* pushArtifact(repo, "untag-me", "tagged")
        const result = yield* Effect.either(registry.deleteManifest(repo, "untag-me"))
        if (options.tagDelete === "supported") {
          expect(result._tag).toBe("Right")
          expect(yield* registry.resolveManifest(repo, "untag-me")).toEqual(Option.none())
          expect(Option.isSome(yield* registry.getManifest(repo, pushed.digest))).toBe(true)
        } else {
          expect(result._tag === "Left" && result.left._tag).toBe("Unsupported")
          expect(Option.isSome(yield* registry.resolveManifest(repo, "untag-me"))).toBe(true)
        }
      })))
  })
}
