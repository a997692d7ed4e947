/**
 * A counting HTTP proxy for the benchmark: forwards every request to the registry unchanged (the
 * `Host` header included, so the registry's `Location` headers point back at the proxy) and
 * counts requests by method and OCI path class.
 */
import * as Http from "node:http"
import type { AddressInfo } from "node:net"

export type Counts = Record<string, number>

export interface CountingProxy {
  /** `127.0.0.1:PORT` */
  readonly host: string
  readonly reset: () => void
  readonly snapshot: () => Counts
  readonly total: () => number
  readonly stop: () => Promise<void>
}

/** `GET manifest`, `PUT upload`, `GET tags`… (the reference kind does not matter here). */
export const classify = (method: string, url: string): string => {
  const path = url.split("?")[0] ?? url
  const kind = /\/blobs\/uploads\//.test(path)
    ? "upload"
    : /\/blobs\//.test(path)
    ? "blob"
    : /\/manifests\//.test(path)
    ? "manifest"
    : /\/tags\/list$/.test(path)
    ? "tags"
    : path
  return `${method} ${kind}`
}

export const startCountingProxy = (upstream: string): Promise<CountingProxy> => {
  const target = new URL(upstream)
  const agent = new Http.Agent({ keepAlive: true, maxSockets: 64 })
  let counts: Counts = {}
  const server = Http.createServer((req, res) => {
    const key = classify(req.method ?? "?", req.url ?? "/")
    counts[key] = (counts[key] ?? 0) + 1
    const forward = Http.request({
      host: target.hostname,
      port: target.port,
      method: req.method,
      path: req.url,
      headers: req.headers,
      agent
    }, (upstreamResponse) => {
      res.writeHead(upstreamResponse.statusCode ?? 502, upstreamResponse.headers)
      upstreamResponse.pipe(res)
    })
    forward.on("error", () => res.destroy())
    req.pipe(forward)
  })
  server.keepAliveTimeout = 60_000
  return new Promise((resolve) => {
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as AddressInfo
      resolve({
        host: `127.0.0.1:${port}`,
        reset: () => {
          counts = {}
        },
        snapshot: () => ({ ...counts }),
        total: () => Object.values(counts).reduce((a, b) => a + b, 0),
        stop: () =>
          new Promise<void>((done) => {
            server.closeAllConnections()
            server.close(() => done())
            agent.destroy()
          })
      })
    })
  })
}
