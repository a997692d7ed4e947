/**
 * The behavioural suite of the state store: the same assertions against `MemoryRegistry` (with
 * and without distribution's quirks) and against a real distribution 2.8 registry.
 *
 * Each test builds its backends with `StateBackend.make` over the `Registry` in context (so that
 * several backends with different options can share one repository) in a repository of its own.
 */
import { describe, expect, it } from "@effect/vitest"
import { Chunk, Effect, Layer, Option, Stream } from "effect"
import type * as Scope from "effect/Scope"
import * as Zlib from "node:zlib"
import * as LockInfo from "../../src/LockInfo.js"
import { Registry } from "../../src/Registry.js"
import * as StateBackend from "../../src/StateBackend.js"
import * as WireFormat from "../../src/WireFormat.js"
import { emptyDescriptor, packManifest, pushBlob, pushManifest } from "./ghoten.js"
import { str, text, tfState } from "./support.js"

export interface StateSuiteOptions {
  /** `effect`: TestClock at 0 (MemoryRegistry); `live`: real clock (real registries). */
  readonly clock: "effect" | "live"
  /** A registry client (a fresh registry, or a fresh client to a shared one). */
  readonly registry: () => Layer.Layer<Registry, unknown>
  /** A repository name unique to this test. */
  readonly repository: (name: string) => string
}

type Body = (repository: string) => Effect.Effect<void, unknown, Registry | Scope.Scope>

const slug = (name: string) => name.toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/^-+|-+$/g, "").slice(0, 60)

/** `data` as a (raw or gzip) state manifest of workspace `workspace` with custom fields, at `tag`. */
export const pushStateManifest = (repository: string, tag: string, options: {
  readonly data: Uint8Array
  readonly workspace: string
  readonly artifactType?: string | undefined
  readonly layerMediaType?: string | undefined
  readonly layers?: "none" | undefined
  readonly annotations?: Record<string, string> | undefined
}) =>
  Effect.gen(function*() {
    const layer = yield* pushBlob(repository, options.data)
    const bytes = packManifest(
      options.artifactType ?? WireFormat.ArtifactType.state,
      options.layers === "none" ? [] : [{ mediaType: options.layerMediaType ?? WireFormat.LayerMediaType.state, ...layer }],
      {
        "org.opencontainers.image.created": "2026-01-10T12:00:00Z",
        "org.terraform.state.updated_at": "2026-01-10T12:00:00.5Z",
        "org.terraform.workspace": options.workspace,
        ...options.annotations
      }
    )
    return yield* pushManifest(repository, bytes, [tag])
  })

/** A gzip stream of `members` concatenated members of 1 MiB of zeros each: ~1 KiB per MiB. */
export const gzipBomb = (members: number): Uint8Array => {
  const member = Zlib.gzipSync(Buffer.alloc(1 << 20), { level: 9 })
  return new Uint8Array(Buffer.concat(Array.from({ length: members }, () => member)))
}

export const listTags = (repository: string) =>
  Effect.flatMap(Registry, (r) => Effect.map(Stream.runCollect(r.listTags(repository)), (c) => Chunk.toArray(c).sort()))

const manifestJson = (repository: string, tag: string) =>
  Effect.gen(function*() {
    const registry = yield* Registry
    const m = Option.getOrThrow(yield* registry.getManifest(repository, tag))
    return JSON.parse(str(m.bytes)) as {
      artifactType: string
      layers: Array<{ mediaType: string; digest: string; size: number }>
      annotations: Record<string, string>
    }
  })

export const stateSuite = (options: StateSuiteOptions) => {
  const test = (name: string, body: Body) => {
    const run = () => Effect.scoped(body(options.repository(slug(name)))).pipe(Effect.provide(options.registry()))
    return options.clock === "effect" ? it.effect(name, run) : it.live(name, run)
  }
  const make = (repository: string, o: Partial<StateBackend.Options> = {}) => StateBackend.make({ repository, ...o })

  describe("get / put", () => {
    test("an absent state is None; put then get returns the bytes, MD5, digest and version", (repo) =>
      Effect.gen(function*() {
        const backend = yield* make(repo)
        const sm = yield* backend.stateManager("default")
        expect(yield* sm.get).toEqual(Option.none())
        const put = yield* sm.put(tfState(1))
        expect(put.version).toBe(1)
        const got = Option.getOrThrow(yield* sm.get)
        expect(str(got.data)).toBe(str(tfState(1)))
        expect(got.digest).toBe(put.digest)
        expect(got.version).toBe(1)
        const m = yield* manifestJson(repo, "state-default")
        expect(m.artifactType).toBe("application/vnd.terraform.state.v1")
        expect(m.layers[0]!.mediaType).toBe("application/vnd.terraform.statefile.v1")
        expect(m.annotations["org.terraform.workspace"]).toBe("default")
        const second = yield* sm.put(tfState(2))
        expect(second.version).toBe(2)
        expect(str(Option.getOrThrow(yield* sm.get).data)).toBe(str(tfState(2)))
        expect((yield* manifestJson(repo, "state-default")).annotations["io.oras-state.state.parent"]).toBe(put.digest)
      }))

    test("gzip: +gzip layer, round trip, and a reader configured without compression reads it", (repo) =>
      Effect.gen(function*() {
        const writer = yield* make(repo, { compression: "gzip" })
        const reader = yield* make(repo, { compression: "none" })
        const big = text(JSON.stringify({ version: 4, serial: 7, resources: Array.from({ length: 2000 }, (_, i) => ({ i })) }))
        yield* Effect.flatMap(writer.stateManager("dev"), (sm) => sm.put(big))
        const m = yield* manifestJson(repo, "state-dev")
        expect(m.layers[0]!.mediaType).toBe("application/vnd.terraform.statefile.v1+gzip")
        expect(m.layers[0]!.size).toBeLessThan(big.byteLength / 4)
        const got = Option.getOrThrow(yield* Effect.flatMap(reader.stateManager("dev"), (sm) => sm.get))
        expect(str(got.data)).toBe(str(big))
      }))

    test("an empty state round-trips as a non-nil empty payload, raw and gzip", (repo) =>
      Effect.gen(function*() {
        for (const compression of ["none", "gzip"] as const) {
          const backend = yield* make(repo, { compression })
          const sm = yield* backend.stateManager(`empty-${compression}`)
          yield* sm.put(new Uint8Array(0))
          const got = yield* sm.get
          expect(Option.isSome(got)).toBe(true)
          expect(Option.getOrThrow(got).data.byteLength).toBe(0)
        }
      }))

    test("a state manifest without layers reads as no state", (repo) =>
      Effect.gen(function*() {
        yield* pushStateManifest(repo, "state-default", { data: text("{}"), workspace: "default", layers: "none" })
        const sm = yield* Effect.flatMap(make(repo), (b) => b.stateManager("default"))
        expect(yield* sm.get).toEqual(Option.none())
      }))

    test("outputs: the root outputs of the current state; None without state; CorruptState when not JSON", (repo) =>
      Effect.gen(function*() {
        const backend = yield* make(repo)
        const sm = yield* backend.stateManager("net")
        expect(yield* sm.outputs).toEqual(Option.none())
        yield* sm.put(tfState(3, { vpc_id: "vpc-123", subnet: "10.0.0.0/24" }))
        const outputs = Option.getOrThrow(yield* sm.outputs)
        expect(outputs["vpc_id"]?.value).toBe("vpc-123")
        expect(outputs["subnet"]?.value).toBe("10.0.0.0/24")
        const encrypted = yield* backend.stateManager("encrypted")
        yield* encrypted.put(text("\u0000binary, e.g. OpenTofu state encryption"))
        expect((yield* Effect.flip(encrypted.outputs))._tag).toBe("CorruptState")
      }))
  })

  describe("versions", () => {
    test("versions, getVersion and restore (roll-forward: a new version with the bytes of n)", (repo) =>
      Effect.gen(function*() {
        const backend = yield* make(repo, { versioning: { enabled: true } })
        const sm = yield* backend.stateManager("default")
        for (const serial of [1, 2, 3]) yield* sm.put(tfState(serial))
        const versions = yield* sm.versions
        expect(versions.map((v) => v.version)).toEqual([1, 2, 3])
        expect(versions.map((v) => v.current)).toEqual([false, false, true])
        expect(str(Option.getOrThrow(yield* sm.getVersion(2)).data)).toBe(str(tfState(2)))
        expect(yield* sm.getVersion(9)).toEqual(Option.none())
        expect(yield* sm.getVersion(0)).toEqual(Option.none())
        const restored = yield* sm.restore(1)
        expect(restored.version).toBe(4)
        expect(str(Option.getOrThrow(yield* sm.get).data)).toBe(str(tfState(1)))
        expect(str(Option.getOrThrow(yield* sm.getVersion(4)).data)).toBe(str(tfState(1)))
        const after = yield* sm.versions
        expect(after.map((v) => v.version)).toEqual([1, 2, 3, 4])
        expect(after.find((v) => v.current)?.version).toBe(4)
        // History is untouched by the roll-forward.
        expect(after.slice(0, 3).map((v) => v.digest)).toEqual(versions.map((v) => v.digest))
        expect((yield* Effect.flip(sm.restore(42)))._tag).toBe("InvalidReference")
        expect(yield* listTags(repo)).toEqual(
          ["state-default", "stver-default-v1", "stver-default-v2", "stver-default-v3", "stver-default-v4"]
        )
      }))

    test("delete removes the state only: versions and lock stay, numbering continues", (repo) =>
      Effect.gen(function*() {
        const backend = yield* make(repo, { versioning: { enabled: true } })
        const sm = yield* backend.stateManager("stage")
        yield* sm.put(tfState(1))
        yield* sm.put(tfState(2))
        const before = yield* sm.versions
        const lockId = yield* sm.lock(LockInfo.make({ ID: "delete-lock", Who: "me@host" }))
        expect(yield* sm.delete).toBe(true)
        expect(yield* sm.get).toEqual(Option.none())
        expect(yield* sm.delete).toBe(false)
        const after = yield* sm.versions
        expect(after.map((v) => v.version)).toEqual([1, 2])
        // A version that shared the state's manifest keeps its history (a detached copy on
        // registries that delete by digest only, with the same updated_at).
        expect(after.map((v) => v.updatedAt)).toEqual(before.map((v) => v.updatedAt))
        expect(str(Option.getOrThrow(yield* sm.getVersion(2)).data)).toBe(str(tfState(2)))
        expect(Option.getOrThrow(yield* sm.lockInfo).info.ID).toBe(lockId)
        // The next put continues the history instead of overwriting version 1.
        const next = yield* sm.put(tfState(3), { lockId })
        expect(next.version).toBe(3)
        expect(str(Option.getOrThrow(yield* sm.getVersion(1)).data)).toBe(str(tfState(1)))
        yield* sm.unlock(lockId)
      }))
  })

  describe("workspaces", () => {
    test("default is always listed; hashed names resolved from annotations; sorted; no duplicates", (repo) =>
      Effect.gen(function*() {
        const backend = yield* make(repo, { versioning: { enabled: true } })
        expect(yield* backend.workspaces).toEqual(["default"])
        for (const name of ["zeta", "my workspace", "a/b", "default", "dev", "dev-v2", "ünïcode"]) {
          const sm = yield* backend.stateManager(name)
          yield* sm.put(tfState(1))
          yield* sm.put(tfState(2))
        }
        expect(yield* backend.workspaces).toEqual(["a/b", "default", "dev", "dev-v2", "my workspace", "zeta", "ünïcode"])
        const tags = yield* listTags(repo)
        expect(tags).toContain("state-ws-052c7440eea985d3")
        expect(tags).toContain("state-ws-c14cddc033f64b9d")
        const other = yield* make(repo)
        expect(yield* other.workspaces).toEqual(["a/b", "default", "dev", "dev-v2", "my workspace", "zeta", "ünïcode"])
      }))

    test("deleteWorkspace refuses default, and a locked workspace unless forced", (repo) =>
      Effect.gen(function*() {
        const backend = yield* make(repo)
        expect((yield* Effect.flip(backend.deleteWorkspace("default")))._tag).toBe("InvalidReference")
        expect((yield* Effect.flip(backend.deleteWorkspace("default", { force: true })))._tag).toBe("InvalidReference")
        const sm = yield* backend.stateManager("locked")
        yield* sm.put(tfState(1))
        yield* sm.lock(LockInfo.make({ ID: "holder", Who: "bob@host" }))
        const conflict = yield* Effect.flip(backend.deleteWorkspace("locked"))
        expect(conflict._tag).toBe("LockConflict")
        expect(conflict._tag === "LockConflict" && conflict.info.ID).toBe("holder")
        expect(Option.isSome(yield* sm.get)).toBe(true)
        yield* backend.deleteWorkspace("locked", { force: true })
        expect(yield* sm.get).toEqual(Option.none())
        expect(yield* sm.lockInfo).toEqual(Option.none())
        expect(yield* listTags(repo)).toEqual([])
      }))

    test("deleteWorkspace removes state, lock, marker, candidates and version tags by exact match", (repo) =>
      Effect.gen(function*() {
        const backend = yield* make(repo, { versioning: { enabled: true } })
        for (const name of ["foo", "foo-v2", "foo-vbar", "my workspace"]) {
          const sm = yield* backend.stateManager(name)
          yield* sm.put(tfState(1))
          yield* sm.put(tfState(2))
        }
        const foo = yield* backend.stateManager("foo")
        yield* foo.lock(LockInfo.make({ ID: "foo-lock" }))
        // A released marker as ghoten leaves it on registries without DELETE.
        yield* pushManifest(repo, packManifest(WireFormat.ArtifactType.lock, [emptyDescriptor], {
          "org.terraform.workspace": "foo",
          "org.terraform.lock.id": "",
          "org.terraform.lock.info": "",
          "org.terraform.lock.generation": "{\"generation\":0}"
        }), ["unlocked-foo"])
        const before = yield* listTags(repo)
        expect(before.filter((t) => t.startsWith("lockc-")).length).toBe(1)
        yield* backend.deleteWorkspace("foo", { force: true })
        const after = yield* listTags(repo)
        expect(after).toEqual(before.filter((t) =>
          !["state-foo", "locked-foo", "unlocked-foo", "stver-foo-v1", "stver-foo-v2"].includes(t) && !t.startsWith("lockc-")
        ))
        expect(after).toEqual([
          "state-foo-v2",
          "state-foo-vbar",
          "state-ws-052c7440eea985d3",
          "stver-foo-v2-v1",
          "stver-foo-v2-v2",
          "stver-foo-vbar-v1",
          "stver-foo-vbar-v2",
          "stver-ws-052c7440eea985d3-v1",
          "stver-ws-052c7440eea985d3-v2"
        ])
        expect(yield* backend.workspaces).toEqual(["default", "foo-v2", "foo-vbar", "my workspace"])
        for (const name of ["foo-v2", "foo-vbar"]) {
          const sm = yield* backend.stateManager(name)
          expect(str(Option.getOrThrow(yield* sm.get).data)).toBe(str(tfState(2)))
          expect((yield* sm.versions).map((v) => v.version)).toEqual([1, 2])
        }
        // Deleting a hashed workspace works the same way.
        yield* backend.deleteWorkspace("my workspace")
        expect((yield* listTags(repo)).filter((t) => t.includes("ws-052c7440eea985d3"))).toEqual([])
      }))
  })

  describe("limits and strict reads", () => {
    test("max_state_size on put: an over-size state is refused and nothing is written", (repo) =>
      Effect.gen(function*() {
        const backend = yield* make(repo, { maxStateSize: 100 })
        const sm = yield* backend.stateManager("default")
        yield* sm.put(text("x".repeat(100)))
        const refused = yield* Effect.flip(sm.put(text("x".repeat(101))))
        expect(refused._tag).toBe("StateTooLarge")
        expect(str(Option.getOrThrow(yield* sm.get).data)).toBe("x".repeat(100))
      }))

    test("max_state_size on get: a raw state over the limit fails with StateTooLarge (limit itself is fine)", (repo) =>
      Effect.gen(function*() {
        const writer = yield* make(repo)
        yield* Effect.flatMap(writer.stateManager("at"), (sm) => sm.put(text("y".repeat(100))))
        yield* Effect.flatMap(writer.stateManager("over"), (sm) => sm.put(text("y".repeat(101))))
        const reader = yield* make(repo, { maxStateSize: 100 })
        expect(Option.getOrThrow(yield* Effect.flatMap(reader.stateManager("at"), (sm) => sm.get)).data.byteLength).toBe(100)
        const error = yield* Effect.flip(Effect.flatMap(reader.stateManager("over"), (sm) => sm.get))
        expect(error._tag).toBe("StateTooLarge")
      }))

    test("max_state_size on get: the limit applies to the decompressed size (gzip)", (repo) =>
      Effect.gen(function*() {
        const writer = yield* make(repo, { compression: "gzip" })
        yield* Effect.flatMap(writer.stateManager("at"), (sm) => sm.put(text("z".repeat(1000))))
        yield* Effect.flatMap(writer.stateManager("over"), (sm) => sm.put(text("z".repeat(1001))))
        const reader = yield* make(repo, { maxStateSize: 1000 })
        expect(Option.getOrThrow(yield* Effect.flatMap(reader.stateManager("at"), (sm) => sm.get)).data.byteLength).toBe(1000)
        expect((yield* Effect.flip(Effect.flatMap(reader.stateManager("over"), (sm) => sm.get)))._tag).toBe("StateTooLarge")
      }))

    test("a gzip bomb (2 MiB decompressing to 2 GiB) fails with StateTooLarge", (repo) =>
      Effect.gen(function*() {
        const bomb = gzipBomb(2048)
        yield* pushStateManifest(repo, "state-default", {
          data: bomb,
          workspace: "default",
          layerMediaType: WireFormat.LayerMediaType.stateGzip
        })
        const reader = yield* make(repo, { maxStateSize: 4 << 20 })
        const error = yield* Effect.flip(Effect.flatMap(reader.stateManager("default"), (sm) => sm.get))
        expect(error._tag).toBe("StateTooLarge")
        expect(error._tag === "StateTooLarge" && error.limit).toBe(4 << 20)
      }))

    test("strict reads: a state tag holding another artifact type is CorruptState", (repo) =>
      Effect.gen(function*() {
        yield* pushStateManifest(repo, "state-default", {
          data: text("{}"),
          workspace: "default",
          artifactType: "application/vnd.example.other.v1"
        })
        const sm = yield* Effect.flatMap(make(repo), (b) => b.stateManager("default"))
        const error = yield* Effect.flip(sm.get)
        expect(error._tag).toBe("CorruptState")
        expect(error.message).toContain("application/vnd.example.other.v1")
        // A lock artifact where the state should be is not a state either.
        yield* pushStateManifest(repo, "state-dev", { data: text("{}"), workspace: "dev", artifactType: WireFormat.ArtifactType.lock })
        expect((yield* Effect.flip(Effect.flatMap(make(repo), (b) => Effect.flatMap(b.stateManager("dev"), (s) => s.get))))._tag)
          .toBe("CorruptState")
      }))

    test("strict reads: an unknown state layer media type is CorruptState", (repo) =>
      Effect.gen(function*() {
        yield* pushStateManifest(repo, "state-default", {
          data: text("{}"),
          workspace: "default",
          layerMediaType: "application/vnd.terraform.statefile.v1+zstd"
        })
        const sm = yield* Effect.flatMap(make(repo), (b) => b.stateManager("default"))
        const error = yield* Effect.flip(sm.get)
        expect(error._tag).toBe("CorruptState")
        expect(error.message).toContain("+zstd")
      }))
  })
}
