/**
 * Resource-level diff of two Terraform/OpenTofu state documents (format version 4).
 *
 * Resources are compared per instance address, `module.x.type.name[index]` (data sources
 * `data.type.name`, string keys quoted: `aws_instance.web["a"]`, deposed objects suffixed
 * ` (deposed <key>)`), from `resources[].{module, mode, type, name, instances[].index_key}`. An
 * instance is changed when anything recorded for it differs (attributes, dependencies, schema
 * version, status, provider…); the names of the changed top-level attributes are reported, never
 * their values (states hold secrets in clear). Root outputs are compared by name; values of
 * outputs marked sensitive on either side are masked.
 *
 * @since 0.1.0
 */
import * as Either from "effect/Either"

/**
 * @since 0.1.0
 * @category models
 */
export interface StateSummary {
  readonly serial: number | undefined
  readonly lineage: string | undefined
  readonly terraformVersion: string | undefined
}

interface Output {
  readonly value: unknown
  readonly type: unknown
  readonly sensitive: boolean
}

/**
 * A parsed state: summary, instances by address (with what identifies their content) and outputs.
 *
 * @since 0.1.0
 * @category models
 */
export interface ParsedState extends StateSummary {
  readonly instances: ReadonlyMap<string, Record<string, unknown>>
  readonly outputs: ReadonlyMap<string, Output>
}

/**
 * @since 0.1.0
 * @category models
 */
export interface ChangedResource {
  readonly address: string
  /** Top-level attributes whose values differ. */
  readonly attributes: ReadonlyArray<string>
  /** Other recorded fields that differ (`dependencies`, `schema_version`, `provider`, …). */
  readonly meta: ReadonlyArray<string>
}

/**
 * An output as shown: its value, or `"(sensitive)"` when masked.
 *
 * @since 0.1.0
 * @category models
 */
export interface OutputEntry {
  readonly name: string
  readonly sensitive: boolean
  readonly value: unknown
}

/**
 * @since 0.1.0
 * @category models
 */
export interface OutputChange {
  readonly name: string
  readonly sensitive: boolean
  readonly from: unknown
  readonly to: unknown
}

/**
 * @since 0.1.0
 * @category models
 */
export interface StateDiff {
  readonly resources: {
    readonly added: ReadonlyArray<string>
    readonly removed: ReadonlyArray<string>
    readonly changed: ReadonlyArray<ChangedResource>
  }
  readonly outputs: {
    readonly added: ReadonlyArray<OutputEntry>
    readonly removed: ReadonlyArray<OutputEntry>
    readonly changed: ReadonlyArray<OutputChange>
  }
}

/**
 * The stand-in for a masked value.
 *
 * @since 0.1.0
 * @category constants
 */
export const masked = "(sensitive)"

const isRecord = (u: unknown): u is Record<string, unknown> => typeof u === "object" && u !== null && !Array.isArray(u)

const keyPart = (key: unknown): string =>
  key === undefined || key === null ? "" : typeof key === "number" ? `[${key}]` : `[${JSON.stringify(String(key))}]`

/**
 * The address of one resource instance.
 *
 * @since 0.1.0
 * @category utils
 */
export const instanceAddress = (
  resource: { readonly module?: unknown; readonly mode?: unknown; readonly type?: unknown; readonly name?: unknown },
  indexKey: unknown,
  deposed?: unknown
): string => {
  const parts: Array<string> = []
  if (typeof resource.module === "string" && resource.module !== "") parts.push(resource.module)
  if (resource.mode === "data") parts.push("data")
  parts.push(String(resource.type ?? "?"), String(resource.name ?? "?"))
  const address = `${parts.join(".")}${keyPart(indexKey)}`
  return typeof deposed === "string" && deposed !== "" ? `${address} (deposed ${deposed})` : address
}

/**
 * Parse a state document (format version 4).
 *
 * @since 0.1.0
 * @category parsing
 */
export const parseState = (data: Uint8Array): Either.Either<ParsedState, string> => {
  let json: unknown
  try {
    json = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(data))
  } catch {
    return Either.left("not a JSON document (is the state encrypted?)")
  }
  if (!isRecord(json)) return Either.left("not a Terraform state object")
  if (json["version"] !== 4) {
    return Either.left(`state format version ${JSON.stringify(json["version"])} is not supported (only 4)`)
  }
  const instances = new Map<string, Record<string, unknown>>()
  const resources = Array.isArray(json["resources"]) ? json["resources"] : []
  for (const resource of resources) {
    if (!isRecord(resource)) continue
    const list = Array.isArray(resource["instances"]) ? resource["instances"] : []
    for (const instance of list) {
      if (!isRecord(instance)) continue
      const address = instanceAddress(resource, instance["index_key"], instance["deposed"])
      instances.set(address, { provider: resource["provider"], ...instance })
    }
  }
  const outputs = new Map<string, Output>()
  if (isRecord(json["outputs"])) {
    for (const [name, output] of Object.entries(json["outputs"])) {
      if (!isRecord(output)) continue
      outputs.set(name, { value: output["value"], type: output["type"], sensitive: output["sensitive"] === true })
    }
  }
  return Either.right({
    serial: typeof json["serial"] === "number" ? json["serial"] : undefined,
    lineage: typeof json["lineage"] === "string" ? json["lineage"] : undefined,
    terraformVersion: typeof json["terraform_version"] === "string" ? json["terraform_version"] : undefined,
    instances,
    outputs
  })
}

/**
 * JSON with object keys sorted: equal values have equal text.
 *
 * @since 0.1.0
 * @category utils
 */
export const canonical = (value: unknown): string =>
  JSON.stringify(value, (_key, v: unknown) =>
    isRecord(v) ? Object.fromEntries(Object.keys(v).sort().map((k) => [k, v[k]])) : v) ?? "undefined"

const changedKeys = (a: unknown, b: unknown): Array<string> => {
  const left = isRecord(a) ? a : {}
  const right = isRecord(b) ? b : {}
  const keys = [...new Set([...Object.keys(left), ...Object.keys(right)])].sort()
  return keys.filter((k) => canonical(left[k]) !== canonical(right[k]))
}

const attributesKey = (instance: Record<string, unknown>) =>
  "attributes" in instance ? "attributes" : "attributes_flat"

/**
 * Compare two parsed states.
 *
 * @since 0.1.0
 * @category diff
 */
export const diffStates = (from: ParsedState, to: ParsedState): StateDiff => {
  const added = [...to.instances.keys()].filter((a) => !from.instances.has(a)).sort()
  const removed = [...from.instances.keys()].filter((a) => !to.instances.has(a)).sort()
  const changed: Array<ChangedResource> = []
  for (const [address, before] of from.instances) {
    const after = to.instances.get(address)
    if (after === undefined || canonical(before) === canonical(after)) continue
    const attributes = changedKeys(before[attributesKey(before)], after[attributesKey(after)])
    const meta = changedKeys(before, after).filter((k) => k !== "attributes" && k !== "attributes_flat")
    changed.push({ address, attributes, meta })
  }
  changed.sort((a, b) => a.address.localeCompare(b.address))

  const show = (output: Output) => (output.sensitive ? masked : output.value)
  const outputsAdded = [...to.outputs].filter(([name]) => !from.outputs.has(name))
    .map(([name, o]) => ({ name, sensitive: o.sensitive, value: show(o) }))
  const outputsRemoved = [...from.outputs].filter(([name]) => !to.outputs.has(name))
    .map(([name, o]) => ({ name, sensitive: o.sensitive, value: show(o) }))
  const outputsChanged: Array<OutputChange> = []
  for (const [name, before] of from.outputs) {
    const after = to.outputs.get(name)
    if (after === undefined || canonical(before) === canonical(after)) continue
    const sensitive = before.sensitive || after.sensitive
    outputsChanged.push({
      name,
      sensitive,
      from: sensitive ? masked : before.value,
      to: sensitive ? masked : after.value
    })
  }
  const byName = (a: { readonly name: string }, b: { readonly name: string }) => a.name.localeCompare(b.name)
  return {
    resources: { added, removed, changed },
    outputs: {
      added: outputsAdded.sort(byName),
      removed: outputsRemoved.sort(byName),
      changed: outputsChanged.sort(byName)
    }
  }
}

/**
 * An output value for a table cell: masked values as is, strings quoted, long values cut.
 *
 * @since 0.1.0
 * @category utils
 */
export const showValue = (value: unknown, max = 60): string => {
  if (value === masked) return masked
  const text = value === undefined ? "null" : JSON.stringify(value) ?? "null"
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`
}
