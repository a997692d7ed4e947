/**
 * The practical limit: a minimal registry client on undici's `request` (the engine under the
 * library's HTTP client), issuing the fewest requests the wire format allows and nothing else:
 * no verification, no retries, no auth negotiation, no tracing.
 *
 * - get: GET manifest by tag, GET blob (read into one buffer of the declared size; gunzip when the
 *   layer is gzip). With `verify`, the blob is also hashed as it arrives and checked against its
 *   digest: the least a client that verifies what it reads must do.
 * - put: GET the current manifest (the parent: sent first, answered while the state is hashed),
 *   (gzip at level 1 when asked) sha256 of the blob, POST upload, PUT blob, PUT manifest by tag —
 *   the requests of the library's put.
 */
import Undici from "@effect/platform-node/Undici"
import * as Crypto from "node:crypto"
import * as Zlib from "node:zlib"

const manifestType = "application/vnd.oci.image.manifest.v1+json"
const emptyDigest = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"

export interface RawClient {
  readonly get: (repository: string, tag: string, verify?: boolean) => Promise<Uint8Array>
  readonly put: (repository: string, tag: string, data: Uint8Array, gzip: boolean) => Promise<void>
  readonly request: (method: string, path: string, body?: Uint8Array, contentType?: string) => Promise<{ status: number; headers: Record<string, unknown>; body: Buffer }>
  readonly close: () => Promise<void>
}

const sha256 = (data: Uint8Array) => `sha256:${Crypto.createHash("sha256").update(data).digest("hex")}`

export const makeRawClient = (host: string): RawClient => {
  const origin = `http://${host}`
  const agent = new Undici.Agent()

  const readAll = async (body: AsyncIterable<Uint8Array>, length: number, digest?: string): Promise<Buffer> => {
    const out = Buffer.allocUnsafe(length)
    const hash = digest === undefined ? undefined : Crypto.createHash("sha256")
    let offset = 0
    for await (const chunk of body) {
      out.set(chunk, offset)
      offset += chunk.byteLength
      hash?.update(chunk)
    }
    if (hash !== undefined && `sha256:${hash.digest("hex")}` !== digest) throw new Error("raw get: digest mismatch")
    return out
  }

  const request: RawClient["request"] = async (method, path, body, contentType) => {
    const response = await agent.request({
      origin,
      path,
      method: method as "GET",
      headers: {
        // The one manifest type it reads (nothing of the library is loaded: a raw process is Node
        // and undici only).
        ...(path.includes("/manifests/") && method !== "PUT" ? { accept: manifestType } : {}),
        ...(contentType === undefined ? {} : { "content-type": contentType })
      },
      body: body ?? null
    })
    const bytes = Buffer.from(await response.body.arrayBuffer())
    return { status: response.statusCode, headers: response.headers, body: bytes }
  }

  const get: RawClient["get"] = async (repository, tag, verify = false) => {
    const manifest = await request("GET", `/v2/${repository}/manifests/${tag}`)
    if (manifest.status !== 200) throw new Error(`raw get manifest: ${manifest.status}`)
    const layer = (JSON.parse(manifest.body.toString("utf8")) as { layers: Array<{ digest: string; size: number; mediaType: string }> }).layers[0]!
    const blob = await agent.request({ origin, path: `/v2/${repository}/blobs/${layer.digest}`, method: "GET" })
    if (blob.statusCode !== 200) throw new Error(`raw get blob: ${blob.statusCode}`)
    const bytes = await readAll(blob.body, layer.size, verify ? layer.digest : undefined)
    return layer.mediaType.endsWith("+gzip") ? Zlib.gunzipSync(bytes) : bytes
  }

  const put: RawClient["put"] = async (repository, tag, data, gzip) => {
    // The parent read a put makes (the version number and the parent link come from it), on the
    // wire while the state is hashed, as the library does.
    const parentRead = request("GET", `/v2/${repository}/manifests/${tag}`)
    await new Promise((resolve) => setImmediate(resolve))
    const blob = gzip ? Zlib.gzipSync(data, { level: 1 }) : data
    const digest = sha256(blob)
    const parent = await parentRead
    if (parent.status !== 200 && parent.status !== 404) throw new Error(`raw GET parent: ${parent.status}`)
    const started = await request("POST", `/v2/${repository}/blobs/uploads/`)
    if (started.status !== 202) throw new Error(`raw POST upload: ${started.status}`)
    const location = new URL(String(started.headers["location"]), origin)
    location.searchParams.set("digest", digest)
    const uploaded = await request("PUT", location.pathname + location.search, blob, "application/octet-stream")
    if (uploaded.status !== 201) throw new Error(`raw PUT blob: ${uploaded.status}`)
    const manifest = Buffer.from(JSON.stringify({
      schemaVersion: 2,
      mediaType: manifestType,
      artifactType: "application/vnd.terraform.state.v1",
      config: { mediaType: "application/vnd.oci.empty.v1+json", digest: emptyDigest, size: 2, data: "e30=" },
      layers: [{
        mediaType: `application/vnd.terraform.statefile.v1${gzip ? "+gzip" : ""}`,
        digest,
        size: blob.byteLength
      }],
      annotations: {
        "org.terraform.workspace": tag,
        ...(parent.status === 200 ? { "io.oras-state.state.parent": sha256(parent.body) } : {})
      }
    }))
    const tagged = await request("PUT", `/v2/${repository}/manifests/${tag}`, manifest, manifestType)
    if (tagged.status !== 201) throw new Error(`raw PUT manifest: ${tagged.status} ${tagged.body.toString()}`)
  }

  return { get, put, request, close: () => agent.close() }
}
