/**
 * Tiny in-process HTTP servers on 127.0.0.1 for protocol edge cases a real registry will not
 * produce (redirects to other origins, corrupt content, odd pagination, echoed credentials, resets).
 * Every request is recorded (method, URL, headers, body) so tests can assert what the client sent.
 *
 * `hostname: "localhost"` only changes the advertised URL (the socket is still bound to 127.0.0.1):
 * `http://localhost:PORT` and `http://127.0.0.1:PORT` are different origins to a client, which is
 * what the cross-origin tests need.
 */
import { createServer } from "node:http"
import type { IncomingHttpHeaders, ServerResponse } from "node:http"
import type { AddressInfo } from "node:net"
import { Effect } from "effect"
import type { Scope } from "effect"

export interface RecordedRequest {
  readonly method: string
  /** Path and query, as received. */
  readonly url: string
  readonly path: string
  readonly query: URLSearchParams
  readonly headers: IncomingHttpHeaders
  readonly body: Buffer
  /** The client's port: the same one for requests on one kept-alive connection. */
  readonly clientPort: number
}

export interface FakeServer {
  /** `http://127.0.0.1:PORT` (or `http://localhost:PORT`) */
  readonly url: string
  /** `127.0.0.1:PORT` (or `localhost:PORT`) */
  readonly host: string
  readonly port: number
  readonly requests: Array<RecordedRequest>
  close(): Promise<void>
}

export type Handler = (req: RecordedRequest, res: ServerResponse, server: FakeServer) => void | Promise<void>

export interface FakeServerOptions {
  readonly hostname?: "127.0.0.1" | "localhost"
}

export async function startFakeServer(handler: Handler, options: FakeServerOptions = {}): Promise<FakeServer> {
  const requests: Array<RecordedRequest> = []
  let self: FakeServer | undefined
  const server = createServer((req, res) => {
    const chunks: Array<Buffer> = []
    req.on("data", (chunk: Buffer) => chunks.push(chunk))
    req.on("end", () => {
      const url = new URL(req.url ?? "/", "http://fake.invalid")
      const recorded: RecordedRequest = {
        method: req.method ?? "GET",
        url: req.url ?? "/",
        path: url.pathname,
        query: url.searchParams,
        headers: req.headers,
        body: Buffer.concat(chunks),
        clientPort: req.socket.remotePort ?? -1
      }
      requests.push(recorded)
      Promise.resolve(handler(recorded, res, self!)).catch((error: unknown) => {
        if (!res.headersSent) res.writeHead(500, { "content-type": "text/plain" }).end(`fake server bug: ${String(error)}`)
        else res.destroy()
      })
    })
  })
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => resolve())
  })
  const port = (server.address() as AddressInfo).port
  const host = `${options.hostname ?? "127.0.0.1"}:${port}`
  self = {
    url: `http://${host}`,
    host,
    port,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve())
        server.closeAllConnections()
      })
  }
  return self
}

/** A fake server owned by the current `Scope`. */
export const fakeServer = (handler: Handler, options: FakeServerOptions = {}): Effect.Effect<FakeServer, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.promise(() => startFakeServer(handler, options)),
    (server) => Effect.promise(() => server.close())
  )

/** Answer with a JSON body (Content-Length set). */
export const json = (res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void => {
  const payload = Buffer.from(JSON.stringify(body))
  res.writeHead(status, { "content-type": "application/json", "content-length": String(payload.byteLength), ...headers })
  res.end(payload)
}

/** An OCI error body. */
export const ociError = (
  res: ServerResponse,
  status: number,
  code: string,
  message: string,
  headers: Record<string, string> = {}
): void => json(res, status, { errors: [{ code, message, detail: null }] }, headers)

export const basicOf = (username: string, password: string): string =>
  `Basic ${Buffer.from(`${username}:${password}`).toString("base64")}`
