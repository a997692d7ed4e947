/**
 * A fault-injection proxy (node:http, 127.0.0.1) between a registry client and a real registry.
 *
 * Every request is forwarded to `target` unchanged (the `Host` header included, so distribution
 * builds upload `Location`s that point back at the proxy), unless a rule matches it. Rules are
 * tried in order; a rule matches a request by method and path, skips its first `skip` matching
 * requests, then fires on the next `times` ones (a burst). Faults:
 *
 * - `status`: answer `status` (503, 429 + `Retry-After`, …) without forwarding, with a fixed body or
 *   one built from the request (e.g. echoing its `Authorization`, as a careless registry might);
 * - `resetUpload`: forward the request head and the first `afterBytes` bytes of its body (default:
 *   half of it), then destroy both connections — a connection reset mid-upload;
 * - `truncateBody`: forward, send the registry's head (its `Content-Length` too) and only
 *   `keepBytes` bytes of the body (default: half), then close the connection;
 * - `stall`: forward (so a write lands), then never answer (`phase: "head"`), or send the head and
 *   part of the body and then nothing more (`phase: "body"`) — the client's timeouts must fire;
 * - `loseResponse`: forward, wait for the registry's complete answer, then destroy the client's
 *   connection without sending a byte of it — the request took effect, the client cannot know.
 *
 * `injected` counts the faults fired (one per request hit).
 */
import { request as httpRequest } from "node:http"
import type { IncomingMessage, Server, ServerResponse } from "node:http"
import { createServer } from "node:http"
import type { AddressInfo, Socket } from "node:net"

export type Fault =
  | {
    readonly _tag: "status"
    readonly status: number
    readonly headers?: Readonly<Record<string, string>>
    /** The body (default: an OCI error); a function sees the request, to echo what it carried. */
    readonly body?: string | ((request: IncomingMessage) => string)
  }
  | { readonly _tag: "resetUpload"; readonly afterBytes?: number }
  | { readonly _tag: "truncateBody"; readonly keepBytes?: number }
  | { readonly _tag: "stall"; readonly phase: "head" | "body" }
  | { readonly _tag: "loseResponse" }

export interface Rule {
  /** Matches any method when absent. */
  readonly method?: string | ReadonlyArray<string>
  /** Matches any path when absent; a RegExp is tested against the path (no query). */
  readonly path?: RegExp | ((path: string) => boolean)
  /** Matching requests let through before the rule fires (default 0). */
  readonly skip?: number
  /** Matching requests the rule fires on, after `skip` (default 1; `Infinity` for always). */
  readonly times?: number
  readonly fault: Fault
}

export interface ProxiedRequest {
  readonly method: string
  readonly path: string
  /** The fault fired on it, if any. */
  readonly fault: Fault["_tag"] | undefined
}

export interface FaultProxy {
  /** `127.0.0.1:PORT`, to use as the registry address. */
  readonly host: string
  readonly url: string
  /** Every request seen, in arrival order. */
  readonly requests: ReadonlyArray<ProxiedRequest>
  /** Faults fired since the proxy started. */
  readonly injected: number
  /** Replace the rules (and their counters). */
  setRules(rules: ReadonlyArray<Rule>): void
  /** Remove every rule: plain forwarding. */
  clear(): void
  /** Whether every rule set by the last `setRules` has fired at least once. */
  allFired(): boolean
  close(): Promise<void>
}

interface ArmedRule {
  readonly rule: Rule
  seen: number
  fired: number
}

const matches = (rule: Rule, method: string, path: string): boolean => {
  if (rule.method !== undefined) {
    const methods = typeof rule.method === "string" ? [rule.method] : rule.method
    if (!methods.includes(method)) return false
  }
  if (rule.path === undefined) return true
  return typeof rule.path === "function" ? rule.path(path) : rule.path.test(path)
}

export async function startFaultProxy(target: string): Promise<FaultProxy> {
  const upstream = new URL(target)
  let armed: Array<ArmedRule> = []
  let injected = 0
  const requests: Array<ProxiedRequest> = []
  const sockets = new Set<Socket>()
  // Responses held open by `stall`, ended when the proxy closes.
  const stalled = new Set<ServerResponse>()

  const pick = (method: string, path: string): Fault | undefined => {
    for (const entry of armed) {
      if (!matches(entry.rule, method, path)) continue
      entry.seen++
      if (entry.seen <= (entry.rule.skip ?? 0)) continue
      if (entry.fired >= (entry.rule.times ?? 1)) continue
      entry.fired++
      return entry.rule.fault
    }
    return undefined
  }

  // Forward `req` upstream; `onBodyChunk` may cut the upload short (returns false to stop).
  const forward = (
    req: IncomingMessage,
    onResponse: (upstreamResponse: IncomingMessage) => void,
    onError: () => void,
    cutUploadAfter?: number
  ) => {
    const out = httpRequest({
      host: upstream.hostname,
      port: upstream.port,
      method: req.method,
      path: req.url,
      headers: req.headers,
      agent: false
    }, onResponse)
    out.on("error", onError)
    if (cutUploadAfter === undefined) {
      req.pipe(out)
      return out
    }
    let sent = 0
    req.on("data", (chunk: Buffer) => {
      if (sent >= cutUploadAfter) return
      const part = chunk.subarray(0, cutUploadAfter - sent)
      sent += part.byteLength
      out.write(part)
      if (sent >= cutUploadAfter) {
        // Give the partial body a moment to reach the registry, then cut both sides.
        setTimeout(() => {
          out.destroy()
          req.socket.destroy()
        }, 5)
      }
    })
    return out
  }

  const handle = (req: IncomingMessage, res: ServerResponse) => {
    const method = req.method ?? "GET"
    const path = new URL(req.url ?? "/", "http://proxy.invalid").pathname
    const fault = pick(method, path)
    requests.push({ method, path, fault: fault?._tag })
    if (fault !== undefined) injected++
    const failed = () => {
      if (!res.headersSent) res.writeHead(502).end("proxy: upstream failed")
      else res.destroy()
    }
    if (fault === undefined) {
      forward(req, (up) => {
        res.writeHead(up.statusCode ?? 502, up.rawHeaders)
        up.pipe(res)
      }, failed)
      return
    }
    switch (fault._tag) {
      case "status": {
        req.resume()
        req.on("end", () => {
          const text = typeof fault.body === "function" ? fault.body(req) : fault.body
          const body = Buffer.from(text ?? JSON.stringify({ errors: [{ code: "UNAVAILABLE", message: "injected fault" }] }))
          res.writeHead(fault.status, {
            "content-type": "application/json",
            "content-length": String(body.byteLength),
            ...fault.headers
          })
          res.end(body)
        })
        return
      }
      case "resetUpload": {
        const length = Number(req.headers["content-length"] ?? 0)
        const cut = fault.afterBytes ?? Math.floor(length / 2)
        if (length === 0 || cut >= length) {
          // Nothing to cut (no body): reset at once.
          req.socket.destroy()
          return
        }
        forward(req, (up) => up.resume(), () => undefined, cut)
        return
      }
      case "truncateBody": {
        forward(req, (up) => {
          const declared = Number(up.headers["content-length"] ?? NaN)
          const keep = fault.keepBytes ?? (Number.isFinite(declared) ? Math.floor(declared / 2) : 0)
          res.writeHead(up.statusCode ?? 502, up.rawHeaders)
          let sent = 0
          let cut = false
          up.on("data", (chunk: Buffer) => {
            if (cut) return
            const part = chunk.subarray(0, Math.max(0, keep - sent))
            sent += part.byteLength
            if (sent >= keep) {
              cut = true
              up.destroy()
              res.write(part, () => res.socket?.destroy())
            } else {
              res.write(part)
            }
          })
          up.on("end", () => {
            // The body was shorter than the cut: still never end it cleanly.
            if (!cut) res.socket?.destroy()
          })
        }, failed)
        return
      }
      case "stall": {
        stalled.add(res)
        res.on("close", () => stalled.delete(res))
        forward(req, (up) => {
          if (fault.phase === "head") {
            up.resume()
            return
          }
          res.writeHead(up.statusCode ?? 502, up.rawHeaders)
          const declared = Number(up.headers["content-length"] ?? NaN)
          const keep = Number.isFinite(declared) ? Math.floor(declared / 2) : 1
          let sent = 0
          up.on("data", (chunk: Buffer) => {
            const part = chunk.subarray(0, Math.max(0, keep - sent))
            sent += part.byteLength
            if (part.byteLength > 0) res.write(part)
          })
        }, () => undefined)
        return
      }
      case "loseResponse": {
        forward(req, (up) => {
          up.resume()
          up.on("end", () => res.socket?.destroy())
          up.on("error", () => res.socket?.destroy())
        }, () => res.socket?.destroy())
        return
      }
    }
  }

  const server: Server = createServer(handle)
  server.keepAliveTimeout = 5_000
  server.on("connection", (socket) => {
    sockets.add(socket)
    socket.on("close", () => sockets.delete(socket))
  })
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => resolve())
  })
  const port = (server.address() as AddressInfo).port
  const host = `127.0.0.1:${port}`
  return {
    host,
    url: `http://${host}`,
    requests,
    get injected() {
      return injected
    },
    setRules(rules) {
      armed = rules.map((rule) => ({ rule, seen: 0, fired: 0 }))
    },
    clear() {
      armed = []
    },
    allFired() {
      return armed.every((entry) => entry.fired > 0)
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const res of stalled) res.destroy()
        for (const socket of sockets) socket.destroy()
        server.close(() => resolve())
      })
  }
}
