/**
 * The floor of an Effect client: the same minimal requests as `raw.ts`, on `@effect/platform`'s
 * `HttpClient` over undici (`NodeHttpClient.layerUndici`, its own span turned off), with nothing
 * of ours — no verification, retries, timeouts, auth, spans or rate limiting. The distance between
 * this and the raw client is the cost of the platform client and the Effect runtime per request;
 * the distance between this and `HttpRegistry` is ours.
 */
import * as HttpBody from "@effect/platform/HttpBody"
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as ManagedRuntime from "effect/ManagedRuntime"
import * as Crypto from "node:crypto"
import { manifestAccept } from "../src/Registry.js"

const manifestType = "application/vnd.oci.image.manifest.v1+json"
const emptyDigest = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"

export interface PlatformClient {
  readonly get: (repository: string, tag: string) => Promise<Uint8Array>
  readonly put: (repository: string, tag: string, data: Uint8Array) => Promise<void>
  readonly close: () => Promise<void>
}

export const makePlatformClient = async (host: string): Promise<PlatformClient> => {
  const origin = `http://${host}`
  const runtime = ManagedRuntime.make(NodeHttpClient.layerUndici)
  const client = HttpClient.withTracerDisabledWhen(await runtime.runPromise(HttpClient.HttpClient), () => true)

  const get = (repository: string, tag: string) =>
    runtime.runPromise(Effect.gen(function*() {
      const manifest = yield* client.get(`${origin}/v2/${repository}/manifests/${tag}`, { headers: { accept: manifestAccept } })
      const layer = ((yield* manifest.json) as { layers: Array<{ digest: string }> }).layers[0]!
      const blob = yield* client.get(`${origin}/v2/${repository}/blobs/${layer.digest}`)
      return new Uint8Array(yield* blob.arrayBuffer)
    }))

  // The library's requests: the parent read is sent first and answered while the state is hashed.
  const put = (repository: string, tag: string, data: Uint8Array) =>
    runtime.runPromise(Effect.gen(function*() {
      const parentRead = yield* Effect.fork(
        Effect.flatMap(client.get(`${origin}/v2/${repository}/manifests/${tag}`, { headers: { accept: manifestAccept } }), (r) => r.arrayBuffer)
      )
      yield* Effect.promise(() => new Promise((resolve) => setImmediate(resolve)))
      const digest = `sha256:${Crypto.createHash("sha256").update(data).digest("hex")}`
      yield* Fiber.join(parentRead)
      const started = yield* client.post(`${origin}/v2/${repository}/blobs/uploads/`)
      const location = new URL(started.headers["location"]!, origin)
      location.searchParams.set("digest", digest)
      yield* client.execute(
        HttpClientRequest.put(location.href).pipe(HttpClientRequest.setBody(HttpBody.uint8Array(data, "application/octet-stream")))
      )
      const manifest = new TextEncoder().encode(JSON.stringify({
        schemaVersion: 2,
        mediaType: manifestType,
        artifactType: "application/vnd.terraform.state.v1",
        config: { mediaType: "application/vnd.oci.empty.v1+json", digest: emptyDigest, size: 2, data: "e30=" },
        layers: [{ mediaType: "application/vnd.terraform.statefile.v1", digest, size: data.byteLength }],
        annotations: { "org.terraform.workspace": tag }
      }))
      const tagged = yield* client.execute(
        HttpClientRequest.put(`${origin}/v2/${repository}/manifests/${tag}`).pipe(
          HttpClientRequest.setBody(HttpBody.uint8Array(manifest, manifestType))
        )
      )
      if (tagged.status !== 201) return yield* Effect.die(new Error(`platform PUT manifest: ${tagged.status}`))
    }))

  return { get, put, close: () => runtime.dispose() }
}
