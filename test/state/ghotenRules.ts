/**
 * ghoten's strict read rules (G2/G3/T, research/wire-format.md §A–§C), as a checker: every
 * manifest oras-state writes must be readable by a ghoten client. Each function returns the list
 * of violated rules (empty = a ghoten reader accepts it and understands it as we meant it).
 */
import { Chunk, Effect, Option, Stream } from "effect"
import { Registry } from "../../src/Registry.js"
import { emptyDescriptor } from "./ghoten.js"

const manifestMediaType = "application/vnd.oci.image.manifest.v1+json"
const stateType = "application/vnd.terraform.state.v1"
const lockType = "application/vnd.terraform.lock.v1"
const stateLayerTypes = ["application/vnd.terraform.statefile.v1", "application/vnd.terraform.statefile.v1+gzip"]
const lockInfoKeys = ["ID", "Operation", "Info", "Who", "Version", "Created", "Path"]

/** Go RFC3339Nano as `time.Format` writes it: UTC `Z`, 1–9 fraction digits without trailing zeros. */
export const rfc3339Nano = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{0,8}[1-9])?Z$/
/** What Go's `time.Time` JSON decoding accepts (RFC 3339, any fraction, any offset). */
const goTimeJson = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$/
/** ORAS `created`: RFC 3339 seconds precision. */
const createdSeconds = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/

interface Manifest {
  readonly schemaVersion?: unknown
  readonly mediaType?: unknown
  readonly artifactType?: unknown
  readonly config?: Record<string, unknown>
  readonly layers?: ReadonlyArray<Record<string, unknown>>
  readonly annotations?: Record<string, unknown>
}

const parse = (bytes: Uint8Array, violations: Array<string>): Manifest | undefined => {
  try {
    const json: unknown = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes))
    if (typeof json !== "object" || json === null || Array.isArray(json)) {
      violations.push("manifest is not a JSON object")
      return undefined
    }
    return json as Manifest
  } catch {
    violations.push("manifest is not UTF-8 JSON")
    return undefined
  }
}

const isEmptyDescriptor = (d: Record<string, unknown> | undefined) =>
  d !== undefined && d["mediaType"] === emptyDescriptor.mediaType && d["digest"] === emptyDescriptor.digest &&
  d["size"] === 2

const common = (m: Manifest, artifactType: string, violations: Array<string>) => {
  if (m.schemaVersion !== 2) violations.push("schemaVersion must be 2")
  if (m.mediaType !== manifestMediaType) violations.push(`mediaType must be ${manifestMediaType}`)
  // G2+ reject a non-empty artifact type other than the expected one; Terraform's copy demands it exactly.
  if (m.artifactType !== artifactType) violations.push(`artifactType must be ${artifactType}, is ${String(m.artifactType)}`)
  if (!isEmptyDescriptor(m.config)) violations.push("config must be the OCI empty descriptor")
  if (!Array.isArray(m.layers)) violations.push("layers must be an array")
  const annotations = m.annotations ?? {}
  for (const [key, value] of Object.entries(annotations)) {
    if (typeof value !== "string") violations.push(`annotation ${key} must be a string`)
  }
  const created = annotations["org.opencontainers.image.created"]
  if (created !== undefined && !(typeof created === "string" && createdSeconds.test(created))) {
    violations.push("org.opencontainers.image.created must be RFC 3339 (seconds)")
  }
  return annotations as Record<string, string>
}

export interface StateExpectation {
  readonly workspace: string
  /** The version the manifest must carry (a version tag's N); any positive number when undefined. */
  readonly version?: number | undefined
}

/** A state manifest as ghoten G3 reads it (`Get`, `currentStateVersion`, workspace listing). */
export const checkStateManifest = (bytes: Uint8Array, expected: StateExpectation): ReadonlyArray<string> => {
  const violations: Array<string> = []
  const m = parse(bytes, violations)
  if (m === undefined) return violations
  const a = common(m, stateType, violations)
  const layer = m.layers?.[0]
  if (m.layers?.length !== 1 || layer === undefined) {
    violations.push("a state manifest has exactly one layer (ghoten reads layers[0]; none = no state)")
  } else {
    if (!stateLayerTypes.includes(String(layer["mediaType"]))) violations.push(`unknown state layer media type ${String(layer["mediaType"])}`)
    if (typeof layer["digest"] !== "string" || !/^sha256:[a-f0-9]{64}$/.test(layer["digest"])) violations.push("layer digest")
    if (!Number.isSafeInteger(layer["size"]) || (layer["size"] as number) < 0) violations.push("layer size")
  }
  if (a["org.terraform.workspace"] !== expected.workspace) {
    violations.push(`org.terraform.workspace must be ${JSON.stringify(expected.workspace)}, is ${JSON.stringify(a["org.terraform.workspace"])}`)
  }
  const updatedAt = a["org.terraform.state.updated_at"]
  if (updatedAt === undefined || !rfc3339Nano.test(updatedAt)) {
    violations.push(`org.terraform.state.updated_at must be RFC3339Nano UTC, is ${JSON.stringify(updatedAt)}`)
  }
  const version = a["org.terraform.state.version"]
  if (version === undefined || !/^[1-9][0-9]{0,9}$/.test(version)) {
    violations.push(`org.terraform.state.version must be a positive decimal, is ${JSON.stringify(version)}`)
  } else if (expected.version !== undefined && Number(version) !== expected.version) {
    violations.push(`org.terraform.state.version must be ${expected.version}, is ${version}`)
  }
  return violations
}

/** A held lock as ghoten G3 reads it (`getLockInfo`, generation and lease checks). */
export const checkLockManifest = (bytes: Uint8Array, expected: { readonly workspace: string; readonly stateTag: string }): ReadonlyArray<string> => {
  const violations: Array<string> = []
  const m = parse(bytes, violations)
  if (m === undefined) return violations
  const a = common(m, lockType, violations)
  if (m.layers?.length !== 1 || !isEmptyDescriptor(m.layers[0])) violations.push("a lock manifest has the empty descriptor as its only layer")
  if (a["org.terraform.workspace"] !== expected.workspace) violations.push("org.terraform.workspace")
  const id = a["org.terraform.lock.id"]
  if (id === undefined || id === "") violations.push("org.terraform.lock.id must be the (non-empty) lock ID")
  const rawInfo = a["org.terraform.lock.info"]
  let info: Record<string, unknown> | undefined
  try {
    info = rawInfo === undefined ? undefined : JSON.parse(rawInfo) as Record<string, unknown>
  } catch {
    violations.push("org.terraform.lock.info is not JSON")
  }
  if (info === undefined || typeof info !== "object" || info === null) {
    violations.push("org.terraform.lock.info must be a LockInfo JSON object")
  } else {
    const keys = Object.keys(info)
    if (keys.join(",") !== lockInfoKeys.join(",")) violations.push(`lock.info keys must be exactly ${lockInfoKeys.join(",")}, are ${keys.join(",")}`)
    for (const key of lockInfoKeys) if (typeof info[key] !== "string") violations.push(`lock.info ${key} must be a string`)
    if (info["ID"] !== id) violations.push("lock.info ID must equal org.terraform.lock.id")
    if (info["Path"] !== expected.stateTag) violations.push(`lock.info Path must be the state tag ${expected.stateTag}, is ${String(info["Path"])}`)
    // Go decodes Created into time.Time: anything else is a decode error ⇒ ghoten's LockError{InconsistentRead}.
    if (typeof info["Created"] !== "string" || !goTimeJson.test(info["Created"])) {
      violations.push(`lock.info Created must be a Go time (RFC 3339), is ${JSON.stringify(info["Created"])}`)
    }
  }
  const generation = a["org.terraform.lock.generation"]
  if (generation === undefined) {
    violations.push("org.terraform.lock.generation is missing (G3 reads generation 0, no lease)")
  } else {
    // Keys in Go struct order; int64 numbers (lease_expiry in ns is beyond 2^53: checked as text).
    const shape = /^\{"generation":(0|[1-9][0-9]{0,18})(,"lease_expiry":([1-9][0-9]{0,18}))?(,"holder_id":("(?:[^"\\]|\\.)*"))?\}$/.exec(generation)
    if (shape === null) {
      violations.push(`org.terraform.lock.generation has not the shape {"generation":N[,"lease_expiry":NS][,"holder_id":ID]}: ${generation}`)
    } else {
      if (shape[1] === "0") violations.push("a held lock has generation ≥ 1")
      if (shape[3] !== undefined && BigInt(shape[3]) < 10n ** 15n) violations.push("lease_expiry must be Unix nanoseconds")
      if (shape[5] !== undefined && JSON.parse(shape[5]) !== id) violations.push("holder_id must be the lock ID")
    }
  }
  return violations
}

/** The released marker as ghoten G3 writes and reads it (a free lock). */
export const checkUnlockedMarker = (bytes: Uint8Array, expected: { readonly workspace: string }): ReadonlyArray<string> => {
  const violations: Array<string> = []
  const m = parse(bytes, violations)
  if (m === undefined) return violations
  const a = common(m, lockType, violations)
  if (m.layers?.length !== 1 || !isEmptyDescriptor(m.layers[0])) violations.push("the marker has the empty descriptor as its only layer")
  if (a["org.terraform.workspace"] !== expected.workspace) violations.push("org.terraform.workspace")
  if (a["org.terraform.lock.id"] !== "") violations.push("org.terraform.lock.id must be empty")
  if (a["org.terraform.lock.info"] !== "") violations.push("org.terraform.lock.info must be empty")
  if (a["org.terraform.lock.generation"] !== "{\"generation\":0}") violations.push("org.terraform.lock.generation must be {\"generation\":0}")
  return violations
}

export interface RepositoryReport {
  readonly checked: ReadonlyArray<{ readonly tag: string; readonly kind: string }>
  readonly violations: ReadonlyArray<{ readonly tag: string; readonly violation: string }>
}

/**
 * Check every tag of the repository that the wire format reserves. `workspaces` are the names
 * written (to map hashed tags back to names); lock candidates (`lockc-`) are checked as locks of
 * the workspace they name.
 */
export const checkRepository = (repository: string, workspaces: ReadonlyArray<string>, wsTagOf: (name: string) => string) =>
  Effect.gen(function*() {
    const registry = yield* Registry
    const byTag = new Map(workspaces.map((w) => [wsTagOf(w), w]))
    const tags = Chunk.toArray(yield* Stream.runCollect(registry.listTags(repository))).sort()
    const checked: Array<{ tag: string; kind: string }> = []
    const violations: Array<{ tag: string; violation: string }> = []
    const report = (tag: string, kind: string, found: ReadonlyArray<string>) => {
      checked.push({ tag, kind })
      for (const violation of found) violations.push({ tag, violation })
    }
    for (const tag of tags) {
      const manifest = Option.getOrUndefined(yield* registry.getManifest(repository, tag))
      if (manifest === undefined) continue
      const bytes = manifest.bytes
      const annotations = (JSON.parse(new TextDecoder().decode(bytes)) as Manifest).annotations ?? {}
      const named = typeof annotations["org.terraform.workspace"] === "string" ? annotations["org.terraform.workspace"] as string : undefined
      const isMarker = annotations["org.terraform.lock.id"] === ""
      let match: RegExpExecArray | null
      if ((match = /^stver-(.+)-v([1-9][0-9]*)$/.exec(tag)) !== null) {
        const workspace = byTag.get(match[1]!) ?? "?"
        report(tag, "version", checkStateManifest(bytes, { workspace, version: Number(match[2]) }))
      } else if (tag.startsWith("state-")) {
        report(tag, "state", checkStateManifest(bytes, { workspace: byTag.get(tag.slice(6)) ?? "?" }))
      } else if (tag.startsWith("locked-")) {
        const workspace = byTag.get(tag.slice(7)) ?? "?"
        report(tag, isMarker ? "marker" : "lock", isMarker
          ? checkUnlockedMarker(bytes, { workspace })
          : checkLockManifest(bytes, { workspace, stateTag: `state-${tag.slice(7)}` }))
      } else if (tag.startsWith("unlocked-")) {
        report(tag, "marker", checkUnlockedMarker(bytes, { workspace: byTag.get(tag.slice(9)) ?? "?" }))
      } else if (tag.startsWith("lockc-")) {
        const workspace = named ?? "?"
        report(tag, isMarker ? "marker" : "candidate", isMarker
          ? checkUnlockedMarker(bytes, { workspace })
          : checkLockManifest(bytes, { workspace, stateTag: `state-${wsTagOf(workspace)}` }))
      }
    }
    return { checked, violations } satisfies RepositoryReport
  })
