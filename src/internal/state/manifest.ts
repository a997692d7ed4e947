/**
 * Building and strictly reading the OCI image manifests of the wire format (state and lock
 * artifacts). Reads follow ghoten's strict rules: an artifact type that is present must be the
 * expected one, and a layer media type must be a known state type; anything else is
 * `CorruptState`, never a silent misread.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import { Digest, emptyJsonDigest } from "../../Digest.js"
import { CorruptState } from "../../Errors.js"
import { MediaType } from "../../Registry.js"
import { Annotation, ArtifactType, LayerMediaType } from "../../WireFormat.js"

const Annotations = Schema.Record({ key: Schema.String, value: Schema.String })

/** @internal */
export const Descriptor = Schema.Struct({
  mediaType: Schema.String,
  digest: Digest,
  size: Schema.Number.pipe(Schema.int(), Schema.nonNegative()),
  data: Schema.optional(Schema.String),
  annotations: Schema.optional(Annotations)
})

/** @internal */
export type Descriptor = typeof Descriptor.Type

/** @internal */
export const ImageManifest = Schema.Struct({
  schemaVersion: Schema.Literal(2),
  mediaType: Schema.optional(Schema.String),
  artifactType: Schema.optional(Schema.String),
  config: Descriptor,
  layers: Schema.Array(Descriptor),
  annotations: Schema.optional(Annotations)
})

/** @internal */
export type ImageManifest = typeof ImageManifest.Type

const decodeManifest = Schema.decodeUnknownEither(Schema.parseJson(ImageManifest))

/** The empty config descriptor, with the `{}` inlined as ORAS writes it. @internal */
export const emptyConfig: Descriptor = {
  mediaType: MediaType.ociEmpty,
  digest: emptyJsonDigest,
  size: 2,
  data: "e30="
}

/** @internal */
export const emptyConfigBytes = new TextEncoder().encode("{}")

/** Parse manifest bytes; `digest` names the manifest in errors. @internal */
export const parseManifest = (bytes: Uint8Array, digest: string): Effect.Effect<ImageManifest, CorruptState> => {
  let text: string
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes)
  } catch {
    return Effect.fail(new CorruptState({ digest, reason: "manifest is not UTF-8" }))
  }
  const result = decodeManifest(text)
  if (result._tag === "Right") {
    const m = result.right
    if (m.mediaType !== undefined && m.mediaType !== MediaType.ociManifest) {
      return Effect.fail(new CorruptState({ digest, reason: `unexpected manifest media type ${m.mediaType}` }))
    }
    return Effect.succeed(m)
  }
  const detail = firstIssue(result.left)
  return Effect.fail(
    new CorruptState({
      digest,
      reason: `not an OCI image manifest${detail === undefined ? "" : ` (${detail.path.join(".") || "root"}: ${detail.message.slice(0, 120)})`}`
    })
  )
}

// The first problem, formatted. Formatting quotes the offending value, recursively: a hostile
// manifest nesting arrays a million deep overflows the stack there (a defect); it then has no detail.
const firstIssue = (error: ParseResult.ParseError): ParseResult.ArrayFormatterIssue | undefined => {
  try {
    return ParseResult.ArrayFormatter.formatErrorSync(error)[0]
  } catch {
    return undefined
  }
}

/** Compact JSON in ORAS field order. @internal */
export const encodeManifest = (manifest: {
  readonly artifactType: string
  readonly layers: ReadonlyArray<Descriptor>
  readonly annotations: Readonly<Record<string, string>>
}): Uint8Array => {
  const annotations = Object.fromEntries(Object.entries(manifest.annotations).sort(([a], [b]) => (a < b ? -1 : 1)))
  return new TextEncoder().encode(JSON.stringify({
    schemaVersion: 2,
    mediaType: MediaType.ociManifest,
    artifactType: manifest.artifactType,
    config: emptyConfig,
    layers: manifest.layers,
    annotations
  }))
}

/** @internal */
export type StateLayerKind = "raw" | "gzip"

const stateLayerKinds: Readonly<Record<string, StateLayerKind>> = {
  [LayerMediaType.state]: "raw",
  [LayerMediaType.stateGzip]: "gzip",
  [LayerMediaType.legacyState]: "raw",
  [LayerMediaType.legacyStateGzip]: "gzip"
}

/** What a state manifest says about the state it holds. @internal */
export interface StateManifest {
  readonly manifest: ImageManifest
  /** `None`-like: a manifest without layers means "no state" (ghoten). */
  readonly layer: { readonly descriptor: Descriptor; readonly kind: StateLayerKind } | undefined
  readonly workspace: string | undefined
  readonly version: number | undefined
  readonly updatedAt: string | undefined
  readonly parent: string | undefined
  readonly uncompressedSize: number | undefined
}

/** Read a state manifest under the strict rules. @internal */
export const readStateManifest = (bytes: Uint8Array, digest: string): Effect.Effect<StateManifest, CorruptState> =>
  Effect.flatMap(parseManifest(bytes, digest), (manifest) => {
    const artifactType = manifest.artifactType ?? ""
    if (artifactType !== "" && artifactType !== ArtifactType.state && artifactType !== ArtifactType.legacyState) {
      return Effect.fail(new CorruptState({ digest, reason: `artifact type ${artifactType} is not a Terraform state` }))
    }
    const annotations = manifest.annotations ?? {}
    const first = manifest.layers[0]
    let layer: StateManifest["layer"]
    if (first !== undefined) {
      const kind = stateLayerKinds[first.mediaType]
      if (kind === undefined) {
        return Effect.fail(new CorruptState({ digest, reason: `unknown state layer media type ${first.mediaType}` }))
      }
      layer = { descriptor: first, kind }
    }
    return Effect.succeed({
      manifest,
      layer,
      workspace: annotations[Annotation.workspace] ?? annotations[Annotation.legacyWorkspace],
      version: parsePositiveInt(annotations[Annotation.version]),
      updatedAt: annotations[Annotation.updatedAt] ?? annotations[Annotation.created],
      parent: annotations[Annotation.parent],
      uncompressedSize: first === undefined ? undefined : parseNonNegativeInt(first.annotations?.[Annotation.uncompressedSize])
    })
  })

/** @internal */
export const parsePositiveInt = (value: string | undefined): number | undefined => {
  if (value === undefined || !/^[1-9][0-9]{0,14}$/.test(value.trim())) return undefined
  return Number(value.trim())
}

const parseNonNegativeInt = (value: string | undefined): number | undefined => {
  if (value === undefined || !/^(0|[1-9][0-9]{0,14})$/.test(value)) return undefined
  return Number(value)
}
