/**
 * Checks of what a registry holds, independent of the library: plain `fetch` to a distribution
 * registry, every digest and size recomputed here. Used by the fault-injection and crash tests to
 * decide whether a state tag resolves to a complete, digest-valid state.
 */
import { createHash } from "node:crypto"
import { gunzipSync } from "node:zlib"

const accept = [
  "application/vnd.oci.image.manifest.v1+json",
  "application/vnd.oci.image.index.v1+json",
  "application/vnd.docker.distribution.manifest.v2+json"
].join(", ")

const sha256 = (data: Uint8Array): string => `sha256:${createHash("sha256").update(data).digest("hex")}`

export interface StoredState {
  /** Digest of the manifest the tag points at (recomputed from its bytes). */
  readonly manifestDigest: string
  /** The state bytes (the single layer, verified against its descriptor; gunzipped if gzip). */
  readonly data: Uint8Array
}

/**
 * What `tag` of `repository` holds: `undefined` when the tag does not exist; an `Error` whose
 * message says what is wrong when the manifest or its layer is incomplete, unverifiable or
 * inconsistent.
 */
export async function readStoredState(registryUrl: string, repository: string, tag: string): Promise<StoredState | undefined> {
  const manifestResponse = await fetch(`${registryUrl}/v2/${repository}/manifests/${tag}`, { headers: { accept } })
  if (manifestResponse.status === 404) {
    await manifestResponse.arrayBuffer()
    return undefined
  }
  if (manifestResponse.status !== 200) throw new Error(`manifest GET answered ${manifestResponse.status}`)
  const manifestBytes = new Uint8Array(await manifestResponse.arrayBuffer())
  const manifestDigest = sha256(manifestBytes)
  const reported = manifestResponse.headers.get("docker-content-digest")
  if (reported !== null && reported !== manifestDigest) {
    throw new Error(`manifest hashes to ${manifestDigest}, the registry says ${reported}`)
  }
  const manifest = JSON.parse(new TextDecoder().decode(manifestBytes)) as {
    readonly artifactType?: string
    readonly layers?: ReadonlyArray<{ readonly digest: string; readonly size: number; readonly mediaType: string }>
  }
  if (manifest.artifactType !== "application/vnd.terraform.state.v1") {
    throw new Error(`artifact type ${String(manifest.artifactType)}`)
  }
  const layer = manifest.layers?.[0]
  if (manifest.layers?.length !== 1 || layer === undefined) throw new Error("not exactly one layer")
  const blobResponse = await fetch(`${registryUrl}/v2/${repository}/blobs/${layer.digest}`)
  if (blobResponse.status !== 200) throw new Error(`layer ${layer.digest} GET answered ${blobResponse.status}`)
  const blob = new Uint8Array(await blobResponse.arrayBuffer())
  if (blob.byteLength !== layer.size) throw new Error(`layer has ${blob.byteLength} bytes, its descriptor says ${layer.size}`)
  const digest = sha256(blob)
  if (digest !== layer.digest) throw new Error(`layer hashes to ${digest}, its descriptor says ${layer.digest}`)
  const data = layer.mediaType.endsWith("+gzip") ? new Uint8Array(gunzipSync(blob)) : blob
  return { manifestDigest, data }
}

export const sha256Hex = (data: Uint8Array): string => createHash("sha256").update(data).digest("hex")
