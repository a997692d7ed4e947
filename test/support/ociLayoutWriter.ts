/**
 * A writer of state-like artifacts for the OCI-layout concurrency tests, run both as fibers of the
 * test process (each with its own `OciLayoutRegistry` instance) and as separate OS processes
 * (`workers/ociLayoutWriter.ts`, bundled with esbuild). Imports nothing from vitest.
 *
 * Each round pushes a new state (unique content) to the writer's own tag `w-<id>` and to the
 * shared tag `current`, then deletes by digest its manifest from `lag` rounds before (a
 * retention prune, which also garbage-collects that manifest's layer).
 */
import { Effect } from "effect"
import * as Digest from "../../src/Digest.js"
import { MediaType, Registry } from "../../src/Registry.js"

export interface WriterResult {
  readonly id: string
  /** Every manifest digest pushed, in order. */
  readonly pushed: ReadonlyArray<string>
  /** The digests deleted (all but the last `lag`). */
  readonly deleted: ReadonlyArray<string>
  /** Manifest PUTs and DELETEs done. */
  readonly writes: number
}

const encoder = new TextEncoder()
export const stateMediaType = "application/vnd.example.terraform.state.v1+json"

/** A Terraform-state-like JSON document, a few KiB, unique per writer and serial. */
export const stateDocument = (id: string, serial: number): Uint8Array =>
  encoder.encode(JSON.stringify({
    version: 4,
    terraform_version: "1.9.0",
    serial,
    lineage: `lineage-${id}`,
    outputs: { writer: { value: id, type: "string" } },
    resources: Array.from({ length: 8 }, (_, i) => ({
      mode: "managed",
      type: "null_resource",
      name: `r${i}`,
      instances: [{ attributes: { id: `${id}-${serial}-${i}`, triggers: { pad: "x".repeat(400 + ((serial * 31 + i) % 97)) } } }]
    }))
  }, null, 2))

export const writerLoop = (repository: string, id: string, rounds: number, lag = 3) =>
  Effect.gen(function*() {
    const registry = yield* Registry
    const pushed: Array<string> = []
    const deleted: Array<string> = []
    let writes = 0
    const config = encoder.encode("{}")
    for (let serial = 0; serial < rounds; serial++) {
      const state = stateDocument(id, serial)
      const layer = { digest: Digest.sha256(state), size: state.byteLength }
      yield* registry.putBlob(repository, { digest: Digest.emptyJsonDigest, size: 2 }, config)
      yield* registry.putBlob(repository, layer, state)
      const manifest = encoder.encode(JSON.stringify({
        schemaVersion: 2,
        mediaType: MediaType.ociManifest,
        artifactType: "application/vnd.example.terraform.state",
        config: { mediaType: MediaType.ociEmpty, digest: Digest.emptyJsonDigest, size: 2 },
        layers: [{ mediaType: stateMediaType, digest: layer.digest, size: layer.size }],
        annotations: { "org.example.writer": id, "org.example.serial": String(serial) }
      }))
      const digest = yield* registry.putManifest(repository, `w-${id}`, { mediaType: MediaType.ociManifest, bytes: manifest })
      yield* registry.putManifest(repository, "current", { mediaType: MediaType.ociManifest, bytes: manifest })
      writes += 2
      pushed.push(digest)
      if (serial >= lag) {
        const old = pushed[serial - lag]!
        // Nobody else deletes our manifests: `false` would mean an index.json update was lost.
        if (!(yield* registry.deleteManifest(repository, old))) {
          return yield* Effect.fail(new Error(`writer ${id}: manifest ${old} vanished before it was deleted`))
        }
        deleted.push(old)
        writes++
      }
    }
    return { id, pushed, deleted, writes } satisfies WriterResult
  })
