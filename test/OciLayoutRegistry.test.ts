/**
 * `OciLayoutRegistry`: the shared behavioural suite, the on-disk format (OCI image-layout spec,
 * read back by skopeo), corruption and stale-lock recovery, garbage collection, and concurrency —
 * reader processes that only use `node:fs` while writers (fibers with their own instances, and
 * separate OS processes) move tags, prune and collect garbage.
 */
import { afterAll, describe, expect, it } from "@effect/vitest"
import { Chunk, Effect, Fiber, Option, Ref, Stream } from "effect"
import { execFile, spawn, spawnSync } from "node:child_process"
import { createHash } from "node:crypto"
import * as NodeFs from "node:fs"
import { hostname, tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import * as Digest from "../src/Digest.js"
import * as OciLayoutRegistry from "../src/OciLayoutRegistry.js"
import { MediaType, Registry } from "../src/Registry.js"
import { type WriterResult, writerLoop } from "./support/ociLayoutWriter.js"
import { artifactManifest, bytes, pushArtifact, registryBehaviour } from "./support/registrySuite.js"

const base = NodeFs.mkdtempSync(join(tmpdir(), "oras-state-ocilayout-"))
afterAll(() => NodeFs.rmSync(base, { recursive: true, force: true }))
const freshDir = () => NodeFs.mkdtempSync(join(base, "store-"))

const SKOPEO = process.env["SKOPEO_BIN"] ?? "/usr/bin/skopeo"
const workers = fileURLToPath(new URL("./support/workers/", import.meta.url))
const refName = "org.opencontainers.image.ref.name"

const sha256 = (data: Uint8Array) => `sha256:${createHash("sha256").update(data).digest("hex")}`

interface IndexJson {
  readonly schemaVersion: number
  readonly mediaType: string
  readonly manifests: ReadonlyArray<{
    readonly mediaType: string
    readonly digest: string
    readonly size: number
    readonly annotations?: Record<string, string>
  }>
}
const readIndexJson = (layout: string): IndexJson => JSON.parse(NodeFs.readFileSync(join(layout, "index.json"), "utf8"))
const blobFile = (layout: string, digest: string) => join(layout, "blobs", "sha256", digest.slice(7))
const collect = <E>(stream: Stream.Stream<Uint8Array, E>) =>
  Stream.runCollect(stream).pipe(Effect.map((chunks) => Buffer.concat(Chunk.toArray(chunks))))

describe("OciLayoutRegistry behaviour", () => {
  registryBehaviour({
    layer: () => OciLayoutRegistry.layer(freshDir()),
    tagDelete: "supported",
    repository: (name) => `suite/${name}`
  })
})

describe("OciLayoutRegistry on disk", () => {
  it.live("files follow the OCI image-layout spec: oci-layout, index.json with ref names, blobs/sha256", () =>
    Effect.gen(function*() {
      const dir = freshDir()
      const layout = join(dir, "team", "app")
      const result = yield* Effect.gen(function*() {
        const registry = yield* Registry
        const first = yield* pushArtifact("team/app", "v1", "first state")
        yield* registry.putManifest("team/app", "latest", { mediaType: MediaType.ociManifest, bytes: first.manifest })
        const untagged = artifactManifest(first.layer, { variant: "by-digest" })
        const untaggedDigest = yield* registry.putManifest("team/app", Digest.sha256(untagged), {
          mediaType: MediaType.ociManifest,
          bytes: untagged
        })
        const second = yield* pushArtifact("team/app", "v2", "second state")
        return { first, second, untagged, untaggedDigest }
      }).pipe(Effect.provide(OciLayoutRegistry.layer(dir)))

      expect(JSON.parse(NodeFs.readFileSync(join(layout, "oci-layout"), "utf8"))).toEqual({ imageLayoutVersion: "1.0.0" })
      const index = readIndexJson(layout)
      expect(index.schemaVersion).toBe(2)
      expect(index.mediaType).toBe(MediaType.ociIndex)
      const byTag = Object.fromEntries(
        index.manifests.filter((d) => d.annotations?.[refName] !== undefined).map((d) => [d.annotations![refName], d])
      )
      expect(Object.keys(byTag).sort()).toEqual(["latest", "v1", "v2"])
      expect(byTag["v1"]).toEqual({
        mediaType: MediaType.ociManifest,
        digest: result.first.digest,
        size: result.first.manifest.byteLength,
        annotations: { [refName]: "v1" }
      })
      expect(byTag["latest"]!.digest).toBe(result.first.digest)
      expect(byTag["v2"]!.digest).toBe(result.second.digest)
      // The manifest pushed by digest is listed once, without a ref name.
      const untaggedEntries = index.manifests.filter((d) => d.annotations === undefined)
      expect(untaggedEntries).toEqual([
        { mediaType: MediaType.ociManifest, digest: result.untaggedDigest, size: result.untagged.byteLength }
      ])

      // blobs/sha256/<hex>: blobs and manifests, each named by the sha256 of its content.
      const files = NodeFs.readdirSync(join(layout, "blobs", "sha256")).sort()
      const expected = [
        Digest.emptyJsonDigest,
        result.first.layer.digest,
        result.second.layer.digest,
        result.first.digest,
        result.second.digest,
        result.untaggedDigest
      ].map((d) => d.slice(7)).sort()
      expect(files).toEqual(expected)
      for (const file of files) {
        expect(sha256(NodeFs.readFileSync(join(layout, "blobs", "sha256", file)))).toBe(`sha256:${file}`)
      }
      expect(NodeFs.readdirSync(join(layout, "blobs"))).toEqual(["sha256"])
      // Nothing else: no lock left behind, no temp files.
      expect(NodeFs.readdirSync(layout).sort()).toEqual(["blobs", "index.json", "oci-layout"])

      // Untagging keeps the manifest, listed without a ref name.
      yield* Effect.gen(function*() {
        const registry = yield* Registry
        expect(yield* registry.deleteManifest("team/app", "v2")).toBe(true)
        expect(yield* registry.deleteManifest("team/app", "v2")).toBe(false)
      }).pipe(Effect.provide(OciLayoutRegistry.layer(dir)))
      const after = readIndexJson(layout)
      expect(after.manifests.filter((d) => d.digest === result.second.digest)).toEqual([
        { mediaType: MediaType.ociManifest, digest: result.second.digest, size: result.second.manifest.byteLength }
      ])
    }))

  it.live("a repository path component that names a layout part is refused", () =>
    Effect.gen(function*() {
      const registry = yield* Registry
      for (const name of ["team/blobs", "team/index.json", "a/oci-layout/b"]) {
        const error = yield* Effect.flip(registry.resolveManifest(name, "v1"))
        expect(error._tag).toBe("InvalidReference")
      }
      // At the top level there is no enclosing layout: allowed.
      yield* pushArtifact("blobs", "v1", "top-level blobs")
      expect(Option.isSome(yield* registry.resolveManifest("blobs", "v1"))).toBe(true)
    }).pipe(Effect.provide(OciLayoutRegistry.layer(freshDir()))))

  it.live("filesystem failures are typed errors, never defects; a file as store directory is InvalidConfig", () =>
    Effect.gen(function*() {
      const dir = freshDir()
      NodeFs.writeFileSync(join(dir, "occupied"), "a file where a repository directory would go")
      const registry = yield* Effect.provide(Registry, OciLayoutRegistry.layer(dir))
      const data = bytes("x")
      const put = yield* Effect.flip(registry.putBlob("occupied/repo", { digest: Digest.sha256(data), size: 1 }, data))
      expect(put._tag).toBe("RegistryError")
      expect(put.message).toMatch(/occupied/)
      expect(put.message).toMatch(/ENOTDIR|EEXIST/)
      // Reads of a path that cannot exist are simply absent.
      expect(yield* registry.resolveManifest("occupied/repo", "v1")).toEqual(Option.none())
      expect(yield* registry.blobExists("occupied/repo", Digest.sha256(data))).toEqual(Option.none())
      expect(Chunk.size(yield* Stream.runCollect(registry.listTags("occupied/repo")))).toBe(0)

      const notADir = yield* Effect.flip(Effect.provide(Registry, OciLayoutRegistry.layer(join(dir, "occupied"))))
      expect(notADir._tag).toBe("InvalidConfig")
      const empty = yield* Effect.flip(Effect.provide(Registry, OciLayoutRegistry.layer("")))
      expect(empty._tag).toBe("InvalidConfig")
    }))
})

// A full disk, on a tiny tmpfs: only where this test may mount one (root with CAP_SYS_ADMIN).
const mountTinyTmpfs = (target: string): boolean =>
  process.getuid?.() === 0 &&
  spawnSync("mount", ["-t", "tmpfs", "-o", "size=256k", "tmpfs", target], { stdio: "ignore" }).status === 0

describe("OciLayoutRegistry on a full disk", () => {
  it.live("ENOSPC is a RegistryError naming the cause; nothing half-written is left behind", () =>
    Effect.gen(function*() {
      const mountPoint = freshDir()
      if (!mountTinyTmpfs(mountPoint)) return console.log("[oci-layout] full disk: cannot mount a tmpfs here, skipped")
      yield* Effect.addFinalizer(() => Effect.sync(() => spawnSync("umount", [mountPoint], { stdio: "ignore" })))
      const registry = yield* Effect.provide(Registry, OciLayoutRegistry.layer(mountPoint))
      const pushed = yield* Effect.provideService(pushArtifact("full/repo", "v1", "small state"), Registry, registry)
      const layout = join(mountPoint, "full", "repo")
      const indexBefore = NodeFs.readFileSync(join(layout, "index.json"))
      const big = new Uint8Array(1024 * 1024).map((_, i) => i % 251)
      const error = yield* Effect.flip(registry.putBlob("full/repo", { digest: Digest.sha256(big), size: big.byteLength }, big))
      expect(error._tag).toBe("RegistryError")
      expect(error.message).toContain("ENOSPC")
      expect(error.message).toContain("no space left on device")
      console.log(`[oci-layout] full disk: ${error.message}`)
      // The temp file was removed; the store still reads back.
      expect(NodeFs.readdirSync(join(layout, "blobs", "sha256")).filter((f) => f.startsWith("."))).toEqual([])
      expect(NodeFs.readFileSync(join(layout, "index.json")).equals(indexBefore)).toBe(true)
      expect(Option.getOrThrow(yield* registry.getManifest("full/repo", "v1")).digest).toBe(pushed.digest)
    }).pipe(Effect.scoped))
})

/** Runs skopeo; stdout as bytes, or the failure. */
const skopeo = (args: ReadonlyArray<string>) =>
  Effect.async<Buffer, Error>((resume) => {
    const child = execFile(SKOPEO, [...args], { encoding: "buffer", timeout: 30_000 }, (error, stdout, stderr) =>
      resume(
        error === null
          ? Effect.succeed(stdout)
          : Effect.fail(new Error(`skopeo ${args.join(" ")}: ${error.message}\n${stderr.toString("utf8")}`))
      ))
    return Effect.sync(() => child.kill())
  })

describe.skipIf(!NodeFs.existsSync(SKOPEO))("skopeo reads what OciLayoutRegistry wrote", () => {
  it.live("inspect --raw oci:DIR/REPO:TAG returns the exact manifest bytes", () =>
    Effect.gen(function*() {
      const dir = freshDir()
      const pushed = yield* Effect.gen(function*() {
        const registry = yield* Registry
        const first = yield* pushArtifact("skopeo/app", "v1", "state read by skopeo", { "org.example.kind": "state" })
        yield* registry.putManifest("skopeo/app", "latest", { mediaType: MediaType.ociManifest, bytes: first.manifest })
        const second = yield* pushArtifact("skopeo/app", "v2", "a newer state")
        return { first, second }
      }).pipe(Effect.provide(OciLayoutRegistry.layer(dir)))
      const layout = join(dir, "skopeo", "app")

      for (const [tag, expected] of [["v1", pushed.first], ["latest", pushed.first], ["v2", pushed.second]] as const) {
        const raw = yield* skopeo(["inspect", "--raw", `oci:${layout}:${tag}`])
        expect(sha256(raw)).toBe(expected.digest)
        expect(raw.equals(Buffer.from(expected.manifest))).toBe(true)
      }
      const config = yield* skopeo(["inspect", "--config", "--raw", `oci:${layout}:v1`])
      expect(config.toString("utf8")).toBe("{}")
    }))

  it.live("a manifest pushed by digest (untagged) is readable by skopeo too", () =>
    Effect.gen(function*() {
      const dir = freshDir()
      const pushed = yield* Effect.gen(function*() {
        const registry = yield* Registry
        const data = bytes("untagged state")
        const layer = { digest: Digest.sha256(data), size: data.byteLength }
        yield* registry.putBlob("skopeo/untagged", { digest: Digest.emptyJsonDigest, size: 2 }, bytes("{}"))
        yield* registry.putBlob("skopeo/untagged", layer, data)
        const manifest = artifactManifest(layer)
        const digest = yield* registry.putManifest("skopeo/untagged", Digest.sha256(manifest), {
          mediaType: MediaType.ociManifest,
          bytes: manifest
        })
        return { manifest, digest }
      }).pipe(Effect.provide(OciLayoutRegistry.layer(dir)))
      const layout = join(dir, "skopeo", "untagged")

      // `oci:DIR@sha256:…` is not understood by skopeo 1.9 (containers/image 5.23 takes it for a
      // path "DIR@sha256"), nor is `oci:DIR:@<index>`; if the installed skopeo knows the digest form,
      // it must return our bytes, otherwise that part is skipped.
      const byDigest = yield* Effect.either(skopeo(["inspect", "--raw", `oci:${layout}@${pushed.digest}`]))
      if (byDigest._tag === "Right") expect(sha256(byDigest.right)).toBe(pushed.digest)
      // What skopeo 1.9 does support: with no reference, the layout's only manifest, which an
      // untagged descriptor (no ref name) is.
      const only = yield* skopeo(["inspect", "--raw", `oci:${layout}`])
      expect(sha256(only)).toBe(pushed.digest)
      expect(only.equals(Buffer.from(pushed.manifest))).toBe(true)
    }))
})

describe("OciLayoutRegistry verification", () => {
  it.live("a corrupt blob file, manifest file or index.json fails with CorruptState", () =>
    Effect.gen(function*() {
      const dir = freshDir()
      const layout = join(dir, "corrupt", "repo")
      const registry = yield* Effect.provide(Registry, OciLayoutRegistry.layer(dir))
      const pushed = yield* Effect.provideService(pushArtifact("corrupt/repo", "v1", "precious state"), Registry, registry)
      expect((yield* collect(registry.getBlob("corrupt/repo", pushed.layer))).toString()).toBe("precious state")

      // Same length, different bytes: caught by the digest.
      NodeFs.writeFileSync(blobFile(layout, pushed.layer.digest), "PRECIOUS STATE")
      const flipped = yield* Effect.flip(collect(registry.getBlob("corrupt/repo", pushed.layer)))
      expect(flipped).toMatchObject({ _tag: "CorruptState", digest: pushed.layer.digest })
      // Truncated: caught by the size.
      NodeFs.writeFileSync(blobFile(layout, pushed.layer.digest), "precious")
      const truncated = yield* Effect.flip(collect(registry.getBlob("corrupt/repo", pushed.layer)))
      expect(truncated._tag).toBe("CorruptState")
      // Re-uploading the blob repairs it.
      yield* registry.putBlob("corrupt/repo", pushed.layer, pushed.data)
      expect((yield* collect(registry.getBlob("corrupt/repo", pushed.layer))).toString()).toBe("precious state")

      // A manifest file with other content of the same length.
      const manifestPath = blobFile(layout, pushed.digest)
      const original = NodeFs.readFileSync(manifestPath)
      const damaged = Buffer.from(original)
      damaged[damaged.length - 2] = damaged[damaged.length - 2]! ^ 1
      NodeFs.writeFileSync(manifestPath, damaged)
      const badManifest = yield* Effect.flip(registry.getManifest("corrupt/repo", "v1"))
      expect(badManifest).toMatchObject({ _tag: "CorruptState", digest: pushed.digest })
      // A manifest file of another size than index.json declares: HEAD notices it too.
      NodeFs.writeFileSync(manifestPath, Buffer.concat([original, Buffer.from(" ")]))
      expect((yield* Effect.flip(registry.resolveManifest("corrupt/repo", "v1")))._tag).toBe("CorruptState")
      NodeFs.writeFileSync(manifestPath, original)
      expect(Option.isSome(yield* registry.getManifest("corrupt/repo", "v1"))).toBe(true)

      // A manifest file missing while index.json lists it.
      NodeFs.unlinkSync(manifestPath)
      expect((yield* Effect.flip(registry.getManifest("corrupt/repo", "v1")))._tag).toBe("CorruptState")
      expect((yield* Effect.flip(registry.resolveManifest("corrupt/repo", pushed.digest)))._tag).toBe("CorruptState")
      NodeFs.writeFileSync(manifestPath, original)

      // A damaged index.json.
      NodeFs.writeFileSync(join(layout, "index.json"), "{\"schemaVersion\":2,\"manif")
      expect((yield* Effect.flip(registry.getManifest("corrupt/repo", "v1")))._tag).toBe("CorruptState")
      expect((yield* Effect.flip(registry.putManifest("corrupt/repo", "v2", {
        mediaType: MediaType.ociManifest,
        bytes: pushed.manifest
      })))._tag).toBe("CorruptState")
      const listing = yield* Effect.flip(Stream.runCollect(registry.listTags("corrupt/repo")))
      expect(listing._tag).toBe("RegistryError")
      expect(listing.message).toMatch(/index\.json/)
    }))
})

describe("OciLayoutRegistry index.json lock", () => {
  const lockFile = (layout: string) => join(layout, ".index.json.lock")
  const seed = (dir: string) => Effect.provide(pushArtifact("locks/repo", "seed", "seed state"), OciLayoutRegistry.layer(dir))
  const deadPid = () => {
    const child = spawnSync(process.execPath, ["-e", "0"])
    return child.pid!
  }
  const putTag = (dir: string, tag: string, manifest: Uint8Array, options: OciLayoutRegistry.Options) =>
    Effect.gen(function*() {
      const registry = yield* Registry
      return yield* registry.putManifest("locks/repo", tag, { mediaType: MediaType.ociManifest, bytes: manifest })
    }).pipe(Effect.provide(OciLayoutRegistry.layer(dir, options)))

  it.live("a lock left by a dead process is recovered at once", () =>
    Effect.gen(function*() {
      const dir = freshDir()
      const layout = join(dir, "locks", "repo")
      const pushed = yield* seed(dir)
      const pid = deadPid()
      NodeFs.writeFileSync(lockFile(layout), JSON.stringify({ pid, hostname: hostname(), token: "crashed", acquiredAt: Date.now() }))
      const started = Date.now()
      // Stale-after is an hour: only the dead PID can make this lock breakable.
      yield* putTag(dir, "after-crash", pushed.manifest, { lockStaleAfter: "1 hour", lockTimeout: "10 seconds" })
      expect(Date.now() - started).toBeLessThan(5_000)
      expect(readIndexJson(layout).manifests.some((d) => d.annotations?.[refName] === "after-crash")).toBe(true)
      expect(NodeFs.readdirSync(layout).filter((f) => f.startsWith("."))).toEqual([])
    }))

  it.live("a lock older than lockStaleAfter is recovered even if its holder lives; an unreadable one by its age", () =>
    Effect.gen(function*() {
      const dir = freshDir()
      const layout = join(dir, "locks", "repo")
      const pushed = yield* seed(dir)
      NodeFs.writeFileSync(
        lockFile(layout),
        JSON.stringify({ pid: process.pid, hostname: hostname(), token: "hung", acquiredAt: Date.now() - 60_000 })
      )
      yield* putTag(dir, "after-hang", pushed.manifest, { lockStaleAfter: "1 second", lockTimeout: "10 seconds" })
      NodeFs.writeFileSync(lockFile(layout), "garbage")
      const old = new Date(Date.now() - 60_000)
      NodeFs.utimesSync(lockFile(layout), old, old)
      yield* putTag(dir, "after-garbage", pushed.manifest, { lockStaleAfter: "1 second", lockTimeout: "10 seconds" })
      const tags = readIndexJson(layout).manifests.map((d) => d.annotations?.[refName])
      expect(tags).toContain("after-hang")
      expect(tags).toContain("after-garbage")
      expect(NodeFs.existsSync(lockFile(layout))).toBe(false)
    }))

  it.live("a live lock is waited for (interruptibly), then reported as TransientRegistry; it is left alone", () =>
    Effect.gen(function*() {
      const dir = freshDir()
      const layout = join(dir, "locks", "repo")
      const pushed = yield* seed(dir)
      const held = JSON.stringify({ pid: process.pid, hostname: hostname(), token: "alive", acquiredAt: Date.now() })
      NodeFs.writeFileSync(lockFile(layout), held)
      const before = NodeFs.readFileSync(join(layout, "index.json"))
      const error = yield* Effect.flip(
        putTag(dir, "blocked", pushed.manifest, { lockStaleAfter: "1 hour", lockTimeout: "300 millis" })
      )
      expect(error._tag).toBe("TransientRegistry")
      expect(error.message).toContain(`pid ${process.pid}`)
      expect(NodeFs.readFileSync(lockFile(layout), "utf8")).toBe(held)
      expect(NodeFs.readFileSync(join(layout, "index.json")).equals(before)).toBe(true)
      // Waiting for it can be interrupted (a server shutting down does not wait for the timeout).
      const waiting = yield* Effect.fork(
        putTag(dir, "interrupted", pushed.manifest, { lockStaleAfter: "1 hour", lockTimeout: "1 minute" })
      )
      yield* Effect.sleep("100 millis")
      const interruptedAt = Date.now()
      yield* Fiber.interrupt(waiting)
      expect(Date.now() - interruptedAt).toBeLessThan(1_000)
      expect(NodeFs.readFileSync(lockFile(layout), "utf8")).toBe(held)
      // Released by its holder: the next writer goes through.
      NodeFs.unlinkSync(lockFile(layout))
      yield* putTag(dir, "unblocked", pushed.manifest, { lockTimeout: "1 second" })
    }))
})

describe("OciLayoutRegistry garbage collection", () => {
  it.live("deleting by digest removes the manifest file and the blobs only it referenced (past the grace period)", () =>
    Effect.gen(function*() {
      const dir = freshDir()
      const layout = join(dir, "gc", "repo")
      const files = () => new Set(NodeFs.readdirSync(join(layout, "blobs", "sha256")).map((f) => `sha256:${f}`))
      const pushed = yield* Effect.gen(function*() {
        const registry = yield* Registry
        const a = yield* pushArtifact("gc/repo", "a", "state a")
        const b = yield* pushArtifact("gc/repo", "b", "state b")
        // c shares b's layer.
        const c = artifactManifest(b.layer, { variant: "c" })
        const cDigest = yield* registry.putManifest("gc/repo", "c", { mediaType: MediaType.ociManifest, bytes: c })
        expect(yield* registry.deleteManifest("gc/repo", a.digest)).toBe(true)
        expect(yield* registry.deleteManifest("gc/repo", b.digest)).toBe(true)
        return { a, b, cDigest }
      }).pipe(Effect.provide(OciLayoutRegistry.layer(dir, { gcGracePeriod: 0 })))
      const left = files()
      expect(left.has(pushed.a.digest)).toBe(false)
      expect(left.has(pushed.a.layer.digest)).toBe(false)
      expect(left.has(pushed.b.digest)).toBe(false)
      expect(left.has(pushed.b.layer.digest)).toBe(true) // still referenced by c
      expect(left.has(pushed.cDigest)).toBe(true)
      expect(left.has(Digest.emptyJsonDigest)).toBe(true)
      expect(left.size).toBe(3)

      // With the default grace period, a recently written blob is kept.
      yield* Effect.gen(function*() {
        const registry = yield* Registry
        expect(yield* registry.deleteManifest("gc/repo", pushed.cDigest)).toBe(true)
      }).pipe(Effect.provide(OciLayoutRegistry.layer(dir)))
      expect(files()).toEqual(new Set([pushed.b.layer.digest, Digest.emptyJsonDigest]))
    }))
})

// -- concurrency across processes ------------------------------------------------------------------

/** Runs `node args…`; its stdout. The child is killed if the effect is interrupted. */
const runNode = (args: ReadonlyArray<string>) =>
  Effect.async<string, Error>((resume) => {
    const child = spawn(process.execPath, [...args], { stdio: ["ignore", "pipe", "pipe"] })
    let out = ""
    let err = ""
    child.stdout.on("data", (d) => (out += d))
    child.stderr.on("data", (d) => (err += d))
    child.on("error", (error) => resume(Effect.fail(error)))
    child.on("exit", (code) =>
      resume(code === 0 ? Effect.succeed(out) : Effect.fail(new Error(`${args[0]} exited ${code}: ${err}`))))
    return Effect.sync(() => child.kill())
  })

/** Bundle the TypeScript writer worker into one .mjs (no TS loader is installed); undefined without esbuild. */
const bundleWriter = Effect.tryPromise({
  try: async () => {
    const esbuild = await import("esbuild")
    const outfile = join(base, "ociLayoutWriter.bundle.mjs")
    await esbuild.build({
      entryPoints: [join(workers, "ociLayoutWriter.ts")],
      bundle: true,
      platform: "node",
      format: "esm",
      target: "node20",
      outfile,
      logLevel: "silent"
    })
    return outfile
  },
  catch: (cause) => cause
}).pipe(Effect.option)

interface ReaderCounts {
  readonly reads: number
  readonly bytes: number
  readonly absent: number
  readonly staleSnapshots: number
  readonly torn: number
  readonly missing: number
  readonly mismatched: number
  readonly errors: ReadonlyArray<string>
}

const ROUNDS = Number(process.env["ORAS_STATE_OCI_LAYOUT_ROUNDS"] ?? 40)
const LAG = 3

describe("OciLayoutRegistry across processes", () => {
  it.live(
    `reader processes never see a torn state while 2 fiber writers and 2 writer processes move tags (${ROUNDS} rounds each)`,
    () =>
      Effect.gen(function*() {
        const root = freshDir()
        const repository = "concurrent/state"
        const layout = join(root, "concurrent", "state")
        const stop = join(base, `stop-${Date.now()}`)
        const bundle = yield* bundleWriter
        const fiberIds = ["f0", "f1"]
        const processIds = Option.isSome(bundle) ? ["p0", "p1"] : []
        const tags = ["current", ...[...fiberIds, ...processIds].map((id) => `w-${id}`)]

        const readers = yield* Effect.forkScoped(
          Effect.all(
            Array.from({ length: 2 }, () => runNode([join(workers, "ociLayoutReader.mjs"), layout, stop, ...tags])),
            { concurrency: "unbounded" }
          )
        )
        // A reader through the Registry in this process (own instance): a tag that only ever moves
        // must never read as absent once it exists (a pruned manifest makes it re-read index.json),
        // and never as corrupt.
        const writersDone = yield* Ref.make(false)
        const registryReader = yield* Effect.gen(function*() {
          const registry = yield* Registry
          let reads = 0
          let vanished = 0
          let blobRaced = 0
          let turn = 0
          const seen = new Set<string>()
          while (!(yield* Ref.get(writersDone))) {
            const tag = `w-${fiberIds[turn++ % fiberIds.length]}`
            const manifest = yield* registry.getManifest(repository, tag)
            if (Option.isNone(manifest)) {
              if (seen.has(tag)) vanished++
              yield* Effect.sleep("5 millis")
              continue
            }
            seen.add(tag)
            const layer = (JSON.parse(new TextDecoder().decode(manifest.value.bytes)) as {
              layers: Array<{ digest: Digest.Digest; size: number }>
            }).layers[0]!
            // The manifest may be pruned (and its layer collected) right after we read it.
            const state = yield* collect(registry.getBlob(repository, layer)).pipe(
              Effect.map(Option.some),
              Effect.catchIf(
                (e) => e._tag === "RegistryError" && e.code === "BLOB_UNKNOWN",
                () => Effect.sync(() => blobRaced++).pipe(Effect.as(Option.none()))
              )
            )
            if (Option.isSome(state)) expect(JSON.parse(state.value.toString("utf8")).lineage).toMatch(/^lineage-/)
            reads++
            yield* Effect.sleep("1 millis")
          }
          return { reads, vanished, blobRaced }
        }).pipe(Effect.provide(OciLayoutRegistry.layer(root)), Effect.forkScoped)

        const started = performance.now()
        const results: ReadonlyArray<WriterResult> = yield* Effect.all(
          [
            // Each fiber writer has its own instance (own semaphores): only the lock file serialises them.
            ...fiberIds.map((id) =>
              Effect.provide(writerLoop(repository, id, ROUNDS, LAG), OciLayoutRegistry.layer(root, { gcGracePeriod: 0 }))
            ),
            ...processIds.map((id) =>
              Effect.map(
                runNode([Option.getOrThrow(bundle), root, repository, id, String(ROUNDS)]),
                (out) => JSON.parse(out) as WriterResult
              )
            )
          ],
          { concurrency: "unbounded" }
        )
        const elapsed = (performance.now() - started) / 1000
        yield* Ref.set(writersDone, true)
        NodeFs.writeFileSync(stop, "")
        const inProcess = yield* Fiber.join(registryReader)
        const counts = (yield* Fiber.join(readers)).map((out) => JSON.parse(out) as ReaderCounts)

        // No lost update: every writer's tag names its last manifest; exactly the manifests not
        // pruned are in the index (a lost index.json update would drop one or resurrect a pruned one).
        const index = readIndexJson(layout)
        const tagged = new Map(index.manifests.flatMap((d) => {
          const tag = d.annotations?.[refName]
          return tag === undefined ? [] : [[tag, d.digest] as const]
        }))
        for (const r of results) {
          expect(r.pushed.length).toBe(ROUNDS)
          expect(tagged.get(`w-${r.id}`)).toBe(r.pushed[ROUNDS - 1])
        }
        const kept = new Set(results.flatMap((r) => r.pushed.slice(-LAG)))
        expect(new Set(index.manifests.map((d) => d.digest))).toEqual(kept)
        if (tagged.has("current")) expect(kept.has(tagged.get("current")!)).toBe(true)
        // Garbage collection (grace 0) left exactly the kept manifests, their layers and the config.
        const layers = [...kept].map((d) =>
          (JSON.parse(NodeFs.readFileSync(blobFile(layout, d), "utf8")) as { layers: Array<{ digest: string }> }).layers[0]!
            .digest
        )
        const blobFiles = NodeFs.readdirSync(join(layout, "blobs", "sha256"))
        expect(new Set(blobFiles.map((f) => `sha256:${f}`))).toEqual(new Set([...kept, ...layers, Digest.emptyJsonDigest]))
        expect(NodeFs.readdirSync(layout).sort()).toEqual(["blobs", "index.json", "oci-layout"]) // no lock, no temp file

        // Every tag still reads back verified through the registry.
        yield* Effect.gen(function*() {
          const registry = yield* Registry
          for (const r of results) {
            const manifest = Option.getOrThrow(yield* registry.getManifest(repository, `w-${r.id}`))
            const layer = (JSON.parse(new TextDecoder().decode(manifest.bytes)) as {
              layers: Array<{ digest: Digest.Digest; size: number }>
            }).layers[0]!
            const state = JSON.parse((yield* collect(registry.getBlob(repository, layer))).toString("utf8"))
            expect(state).toMatchObject({ serial: ROUNDS - 1, lineage: `lineage-${r.id}` })
          }
        }).pipe(Effect.provide(OciLayoutRegistry.layer(root)))

        const total = (key: "reads" | "bytes" | "absent" | "staleSnapshots" | "torn" | "missing" | "mismatched") =>
          counts.reduce((n, c) => n + c[key], 0)
        const writes = results.reduce((n, r) => n + r.writes, 0)
        console.log(
          `[oci-layout] ${results.length} writers (${fiberIds.length} fibers, ${processIds.length} processes) ` +
            `did ${writes} writes (${results.length * ROUNDS * 2} tag moves, ${writes - results.length * ROUNDS * 2} prunes) ` +
            `in ${elapsed.toFixed(1)} s; ${counts.length} reader processes checked ${total("reads")} reads ` +
            `(${(total("bytes") / 1e6).toFixed(1)} MB verified, ${total("staleSnapshots")} stale snapshots re-read, ` +
            `${total("absent")} before first write): torn = ${total("torn")}, missing = ${total("missing")}, ` +
            `mismatched = ${total("mismatched")}; the in-process Registry reader did ${inProcess.reads} verified reads ` +
            `(vanished = ${inProcess.vanished}, ${inProcess.blobRaced} layers pruned between manifest and blob read)`
        )
        expect(inProcess.vanished).toBe(0)
        expect(inProcess.reads).toBeGreaterThan(0)
        for (const c of counts) expect(c.errors).toEqual([])
        expect(total("torn")).toBe(0)
        expect(total("missing")).toBe(0)
        expect(total("mismatched")).toBe(0)
        expect(total("reads")).toBeGreaterThan(0)
      }).pipe(Effect.scoped),
    60_000
  )
})
