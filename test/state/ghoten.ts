/**
 * Golden fixtures: repositories as the ghoten "oras" backend writes them, built from the spec in
 * `shared/research/wire-format.md` (§A tags, §B manifests, §C request sequences, §D versioning),
 * for the generations that matter on the wire:
 *
 * - G0/G1: `application/vnd.opentofu.*` types, `org.opentofu.*` annotations, the workspace
 *   annotation only on hashed names, no `updated_at`; G1 adds gzip and `state-<ws>-v<N>` version
 *   tags; the released marker carries nothing but `created`;
 * - G2: `vnd.terraform.*` / `org.terraform.*`, `updated_at`, the workspace on every manifest;
 * - G3: + `org.terraform.state.version`, the lock generation JSON, the marker's `{"generation":0}`.
 *
 * Manifests are serialized as Go's `encoding/json` does (field order `schemaVersion, mediaType,
 * artifactType, config, layers, annotations`, annotation keys sorted, `<>&` escaped), pushed by
 * digest and then tagged, as ORAS does.
 */
import { Effect } from "effect"
import * as Crypto from "node:crypto"
import * as Zlib from "node:zlib"
import * as Digest from "../../src/Digest.js"
import { MediaType, Registry } from "../../src/Registry.js"
import * as WireFormat from "../../src/WireFormat.js"

export type Generation = "G0" | "G1" | "G2" | "G3"

const legacy = (gen: Generation) => gen === "G0" || gen === "G1"

/** The wire names a generation writes. */
export const namesOf = (gen: Generation) =>
  legacy(gen)
    ? {
      stateType: "application/vnd.opentofu.state.v1",
      lockType: "application/vnd.opentofu.lock.v1",
      layer: "application/vnd.opentofu.statefile.v1",
      layerGzip: "application/vnd.opentofu.statefile.v1+gzip",
      workspace: "org.opentofu.workspace",
      lockId: "org.opentofu.lock.id",
      lockInfo: "org.opentofu.lock.info"
    } as const
    : {
      stateType: "application/vnd.terraform.state.v1",
      lockType: "application/vnd.terraform.lock.v1",
      layer: "application/vnd.terraform.statefile.v1",
      layerGzip: "application/vnd.terraform.statefile.v1+gzip",
      workspace: "org.terraform.workspace",
      lockId: "org.terraform.lock.id",
      lockInfo: "org.terraform.lock.info"
    } as const

/** The empty descriptor exactly as ORAS writes it. */
export const emptyDescriptor = {
  mediaType: "application/vnd.oci.empty.v1+json",
  digest: "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
  size: 2,
  data: "e30="
} as const

/** Go `encoding/json`: HTML-safe escaping of `<`, `>`, `&`, U+2028 and U+2029. */
export const goJson = (value: unknown): string =>
  JSON.stringify(value).replace(/[<>&\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`)

const sortedAnnotations = (annotations: Record<string, string>) =>
  Object.fromEntries(Object.entries(annotations).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))

/** ORAS `PackManifest` v1.1: an OCI image manifest with an artifact type and the empty config. */
export const packManifest = (
  artifactType: string | undefined,
  layers: ReadonlyArray<{ readonly mediaType: string; readonly digest: string; readonly size: number; readonly data?: string }>,
  annotations: Record<string, string>
): Uint8Array =>
  new TextEncoder().encode(goJson({
    schemaVersion: 2,
    mediaType: MediaType.ociManifest,
    ...(artifactType === undefined ? {} : { artifactType }),
    config: emptyDescriptor,
    layers,
    annotations: sortedAnnotations(annotations)
  }))

/** RFC 3339 seconds (`org.opencontainers.image.created`). */
export const goCreated = (epochSeconds: number): string => new Date(epochSeconds * 1000).toISOString().replace(/\.\d{3}Z$/, "Z")

/** Go RFC3339Nano: up to 9 fractional digits, trailing zeros trimmed. */
export const goNano = (epochSeconds: number, nanos: number): string => {
  const base = goCreated(epochSeconds).slice(0, -1)
  const frac = String(nanos).padStart(9, "0").replace(/0+$/, "")
  return frac === "" ? `${base}Z` : `${base}.${frac}Z`
}

/** ghoten gzip: level 1 (BestSpeed). */
export const ghotenGzip = (data: Uint8Array): Uint8Array => new Uint8Array(Zlib.gzipSync(data, { level: 1 }))

/** Push the empty config, then `bytes` by digest, then tag it (ORAS `PackManifest` + `Tag`). */
export const pushManifest = (repository: string, bytes: Uint8Array, tags: ReadonlyArray<string>) =>
  Effect.gen(function*() {
    const registry = yield* Registry
    yield* registry.putBlob(repository, { digest: Digest.emptyJsonDigest, size: 2 }, new TextEncoder().encode("{}"))
    const digest = yield* registry.putManifest(repository, Digest.sha256(bytes), { mediaType: MediaType.ociManifest, bytes })
    for (const tag of tags) yield* registry.putManifest(repository, tag, { mediaType: MediaType.ociManifest, bytes })
    return digest
  })

export const pushBlob = (repository: string, data: Uint8Array) =>
  Effect.gen(function*() {
    const registry = yield* Registry
    const blob = { digest: Digest.sha256(data), size: data.byteLength }
    yield* registry.putBlob(repository, blob, data)
    return blob
  })

export interface GhotenLockInfo {
  readonly ID: string
  readonly Operation: string
  readonly Info: string
  readonly Who: string
  readonly Version: string
  readonly Created: string
}

/** OpenTofu's `statemgr.LockInfo` JSON, `Path` overwritten with the state tag by the backend. */
export const lockInfoJson = (info: GhotenLockInfo, stateTag: string) =>
  goJson({
    ID: info.ID,
    Operation: info.Operation,
    Info: info.Info,
    Who: info.Who,
    Version: info.Version,
    Created: info.Created,
    Path: stateTag
  })

/**
 * A ghoten client of generation `gen` writing to `repository`: `put` follows §C's Put sequence
 * (with its version numbering of §D), `lock` writes a held lock at `locked-<ws>`, `releaseOn405`
 * re-points `locked-<ws>` at the released marker as ghoten does where DELETE answers 405.
 */
export const ghotenClient = (gen: Generation, repository: string, options: {
  readonly gzip?: boolean
  readonly versioning?: boolean
  /** Epoch seconds of the first write; every write advances the clock by one second. */
  readonly startSeconds?: number
} = {}) => {
  const n = namesOf(gen)
  let clock = options.startSeconds ?? 1_768_046_400 // 2026-01-10T12:00:00Z
  const counters = new Map<string, number>()
  const tick = () => {
    clock += 1
    return clock
  }
  const workspaceAnnotation = (workspace: string): Record<string, string> =>
    // G0/G1 stored the real name only for hashed workspaces; G2+ on every manifest.
    legacy(gen) && WireFormat.workspaceTag(workspace) === workspace ? {} : { [n.workspace]: workspace }

  const put = (workspace: string, data: Uint8Array) =>
    Effect.gen(function*() {
      const wsTag = WireFormat.workspaceTag(workspace)
      const gzip = options.gzip === true && gen !== "G0"
      const body = gzip ? ghotenGzip(data) : data
      const layer = yield* pushBlob(repository, body)
      const seconds = tick()
      const version = (counters.get(wsTag) ?? 0) + 1
      const versioning = options.versioning === true && gen !== "G0"
      const annotations: Record<string, string> = {
        "org.opencontainers.image.created": goCreated(seconds),
        ...workspaceAnnotation(workspace),
        ...(legacy(gen) ? {} : { "org.terraform.state.updated_at": goNano(seconds, 995_222_000) }),
        ...(gen === "G3" && versioning ? { "org.terraform.state.version": String(version) } : {})
      }
      const bytes = packManifest(n.stateType, [{ mediaType: gzip ? n.layerGzip : n.layer, ...layer }], annotations)
      const tags = [`state-${wsTag}`, ...(versioning ? [`state-${wsTag}-v${version}`] : [])]
      if (versioning) counters.set(wsTag, version)
      const digest = yield* pushManifest(repository, bytes, tags)
      return { digest, bytes, version: versioning ? version : undefined, updatedAt: annotations["org.terraform.state.updated_at"] }
    })

  const lock = (workspace: string, info: GhotenLockInfo, lock: { readonly leaseExpiryNanos?: bigint; readonly generation?: number } = {}) =>
    Effect.gen(function*() {
      const wsTag = WireFormat.workspaceTag(workspace)
      const seconds = tick()
      const generation = lock.generation ?? 1
      const annotations: Record<string, string> = {
        "org.opencontainers.image.created": goCreated(seconds),
        ...workspaceAnnotation(workspace),
        [n.lockId]: info.ID,
        [n.lockInfo]: lockInfoJson(info, `state-${wsTag}`),
        ...(gen === "G3"
          ? {
            "org.terraform.lock.generation": `{"generation":${generation}${
              lock.leaseExpiryNanos === undefined ? "" : `,"lease_expiry":${lock.leaseExpiryNanos}`
            },"holder_id":${goJson(info.ID)}}`
          }
          : {})
      }
      return yield* pushManifest(repository, packManifest(n.lockType, [emptyDescriptor], annotations), [`locked-${wsTag}`])
    })

  const releaseOn405 = (workspace: string) =>
    Effect.gen(function*() {
      const wsTag = WireFormat.workspaceTag(workspace)
      const annotations: Record<string, string> = {
        "org.opencontainers.image.created": goCreated(tick()),
        ...(legacy(gen)
          ? {}
          : {
            "org.terraform.workspace": workspace,
            "org.terraform.lock.id": "",
            "org.terraform.lock.info": "",
            ...(gen === "G3" ? { "org.terraform.lock.generation": "{\"generation\":0}" } : {})
          })
      }
      return yield* pushManifest(
        repository,
        packManifest(n.lockType, [emptyDescriptor], annotations),
        [`unlocked-${wsTag}`, `locked-${wsTag}`]
      )
    })

  return { gen, names: n, put, lock, releaseOn405 } as const
}

export const lockInfo = (id: string, who = "alice@ci-runner"): GhotenLockInfo => ({
  ID: id,
  Operation: "OperationTypeApply",
  Info: "",
  Who: who,
  Version: "1.11.2",
  Created: "2026-01-10T12:00:00.123456789Z"
})

export const uuid = () => Crypto.randomUUID()
