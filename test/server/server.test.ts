/**
 * The server beyond the happy sequences: transient registry trouble, size limits, Basic auth,
 * request logging, the URL space and its errors, graceful shutdown, `backendBlock`.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Layer, Logger, Redacted } from "effect"
import { Unauthorized } from "../../src/Errors.js"
import * as MemoryRegistry from "../../src/MemoryRegistry.js"
import { Registry } from "../../src/Registry.js"
import * as Server from "../../src/Server.js"
import * as StateBackend from "../../src/StateBackend.js"
import { md5Base64, sleep, startServer, type TestServer, TfClient, tfStateJson } from "./support.js"

const repository = "team/infra-state"

const memoryBackend = (options: Partial<StateBackend.Options> = {}) =>
  StateBackend.layer({ repository, versioning: { enabled: true }, ...options }).pipe(
    Layer.provideMerge(MemoryRegistry.layer())
  )

/** A MemoryRegistry whose operations are changed by `wrap`. */
const wrappedBackend = (wrap: (inner: Registry["Type"]) => Registry["Type"]) =>
  StateBackend.layer({ repository }).pipe(
    Layer.provide(Layer.effect(Registry, Effect.map(Registry, wrap)).pipe(Layer.provide(MemoryRegistry.layer())))
  )

const withServer = async <L extends Layer.Layer<StateBackend.StateBackend, unknown>>(
  backend: L,
  options: Server.ServeOptions,
  body: (server: TestServer<Layer.Layer.Success<L>>) => Promise<void>
) => {
  const server = await startServer<Layer.Layer.Success<L>>(backend as Layer.Layer<Layer.Layer.Success<L>, unknown>, options)
  try {
    await body(server)
  } finally {
    await server.close()
  }
}

type MemoryServer = TestServer<StateBackend.StateBackend | Registry | MemoryRegistry.MemoryRegistryControl>

const setFaults = (server: MemoryServer, plan: MemoryRegistry.FaultPlan) =>
  server.run(Effect.flatMap(MemoryRegistry.MemoryRegistryControl, (control) => control.setFaults(plan)))

describe("transient registry trouble", () => {
  it("503 with Retry-After, then the retried request succeeds", () =>
    withServer(memoryBackend(), {}, async (server: MemoryServer) => {
      const client = new TfClient({ server: server.url })
      await setFaults(server, MemoryRegistry.failFirst(1, { status: 503 }))
      const failed = await client.get()
      expect(failed.status).toBe(503)
      expect(failed.headers.get("retry-after")).toBe("1")
      expect(failed.json().tag).toBe("TransientRegistry")
      expect((await client.get()).status).toBe(204)

      // A write whose blob upload fails: 503, the retry lands once.
      await setFaults(server, MemoryRegistry.failFirst(1, { status: 503 }, (r) => r.operation === "putBlob"))
      expect((await client.put(tfStateJson(1))).status).toBe(503)
      expect((await client.put(tfStateJson(1))).status).toBe(200)
      expect((await client.get()).text).toBe(tfStateJson(1))

      // LOCK and UNLOCK too (the registry keeps failing until the client's retry).
      const down: MemoryRegistry.FaultPlan = () => ({ status: 502 })
      await setFaults(server, down)
      const lockFailed = await client.lock("OperationTypeApply")
      expect(lockFailed.status).toBe(503)
      expect(lockFailed.headers.get("retry-after")).toBe("1")
      await setFaults(server, () => undefined)
      // Terraform's retry resends the same LockInfo.
      expect((await client.lockWith(client.attemptedLockBody!)).status).toBe(200)
      await setFaults(server, down)
      expect((await client.unlock()).status).toBe(503)
      await setFaults(server, () => undefined)
      expect((await client.unlock()).status).toBe(200)
    }))

  it("429 from the registry is passed on with the registry's Retry-After", () =>
    withServer(memoryBackend(), { retryAfter: "2 seconds" }, async (server: MemoryServer) => {
      const client = new TfClient({ server: server.url })
      await setFaults(server, MemoryRegistry.failFirst(1, { status: 429, retryAfterMillis: 2500 }))
      const limited = await client.get()
      expect(limited.status).toBe(429)
      expect(limited.headers.get("retry-after")).toBe("3")
      await setFaults(server, MemoryRegistry.failFirst(1, { status: 503 }))
      const unavailable = await client.get()
      expect(unavailable.status).toBe(503)
      expect(unavailable.headers.get("retry-after")).toBe("2")
    }))

  it("registry authentication failures are 502 with a message and no secrets", () =>
    withServer(
      wrappedBackend((inner) => ({
        ...inner,
        getManifest: () =>
          Effect.fail(new Unauthorized({ operation: "getManifest", status: 401, reason: "the registry refused the credentials" }))
      })),
      {},
      async (server) => {
        const reply = await new TfClient({ server: server.url }).get()
        expect(reply.status).toBe(502)
        expect(reply.json().tag).toBe("Unauthorized")
        expect(reply.json().error).toMatch(/could not authenticate to the registry/)
      }
    ))

  it("non-transient registry refusals are 502, corrupt content 500", () =>
    withServer(memoryBackend(), {}, async (server: MemoryServer) => {
      await setFaults(server, MemoryRegistry.failFirst(1, { status: 400 }))
      const refused = await new TfClient({ server: server.url }).get()
      expect(refused.status).toBe(502)
      expect(refused.json().tag).toBe("RegistryError")
    }))
})

describe("size limits", () => {
  it("413 when the state is over the store's max_state_size", () =>
    withServer(memoryBackend({ maxStateSize: 1024 }), {}, async (server) => {
      const big = JSON.stringify({ version: 4, serial: 1, padding: "x".repeat(2048) })
      const reply = await new TfClient({ server: server.url }).put(big)
      expect(reply.status).toBe(413)
      expect(reply.json().tag).toBe("StateTooLarge")
    }))

  it("413 when the body is over the server's maxBodySize (declared or streamed)", () =>
    withServer(memoryBackend(), { maxBodySize: 512 }, async (server) => {
      const big = JSON.stringify({ version: 4, serial: 1, padding: "x".repeat(1024) })
      const declared = await new TfClient({ server: server.url }).put(big)
      expect(declared.status).toBe(413)
      expect(declared.json().tag).toBe("PayloadTooLarge")
      const bytes = new TextEncoder().encode(big)
      const streamed = await fetch(`${server.url}/state/default`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: new ReadableStream({
          start(controller) {
            controller.enqueue(bytes.slice(0, 400))
            controller.enqueue(bytes.slice(400))
            controller.close()
          }
        }),
        duplex: "half"
      } as RequestInit)
      expect(streamed.status).toBe(413)
      const small = await new TfClient({ server: server.url }).put(tfStateJson(1))
      expect(small.status).toBe(200)
    }))
})

describe("Basic auth", () => {
  const auth = { username: "terraform", password: Redacted.make("s3cret-pa55") }

  it("401 with the challenge without credentials or with wrong ones; the full sequence with them", () =>
    withServer(memoryBackend(), { auth }, async (server) => {
      const anonymous = new TfClient({ server: server.url })
      const refused = await anonymous.get()
      expect(refused.status).toBe(401)
      expect(refused.headers.get("www-authenticate")).toBe('Basic realm="oras-state"')
      expect(refused.json().tag).toBe("Unauthorized")
      expect((await anonymous.lock("OperationTypePlan")).status).toBe(401)
      expect((await new TfClient({ server: server.url, username: "terraform", password: "wrong" }).get()).status).toBe(401)
      expect((await new TfClient({ server: server.url, username: "admin", password: "s3cret-pa55" }).get()).status).toBe(401)
      const malformed = await fetch(`${server.url}/state/default`, { headers: { authorization: "Basic !!!" } })
      expect(malformed.status).toBe(401)

      const client = new TfClient({ server: server.url, username: "terraform", password: "s3cret-pa55" })
      expect((await client.get()).status).toBe(204)
      expect((await client.lock("OperationTypeApply")).status).toBe(200)
      expect((await client.put(tfStateJson(1))).status).toBe(200)
      expect((await client.unlock()).status).toBe(200)
      expect((await client.get()).status).toBe(200)

      // The health endpoint needs no credentials.
      const health = await fetch(`${server.url}/healthz`)
      expect(health.status).toBe(200)
      expect(await health.json()).toEqual({ status: "ok" })
    }))

  it("refuses to start with an empty username", async () => {
    await expect(startServer(memoryBackend(), { auth: { username: "", password: Redacted.make("x") } })).rejects
      .toMatchObject({ _tag: "ServeError" })
  })
})

describe("request log", () => {
  it("one line per request with method, path, status and ms; never bodies, queries or credentials", () =>
    withServer(memoryBackend(), { auth: { username: "terraform", password: Redacted.make("s3cret-pa55") } }, async (server) => {
      const client = new TfClient({ server: server.url, username: "terraform", password: "s3cret-pa55" })
      const marker = "do-not-log-this-body"
      expect((await client.lock("OperationTypeApply")).status).toBe(200)
      expect((await client.put(JSON.stringify({ version: 4, serial: 1, secret: marker }))).status).toBe(200)
      expect((await client.unlock()).status).toBe(200)
      expect((await new TfClient({ server: server.url }).get()).status).toBe(401)
      const requestLines = server.logs.filter((line) => /^INFO (GET|POST|LOCK|UNLOCK) /.test(line))
      expect(requestLines).toHaveLength(4)
      expect(requestLines[0]).toMatch(/^INFO LOCK \/state\/default\/lock 200 \d+ms$/)
      expect(requestLines[1]).toMatch(/^INFO POST \/state\/default 200 \d+ms$/)
      expect(requestLines[2]).toMatch(/^INFO UNLOCK \/state\/default\/lock 200 \d+ms$/)
      expect(requestLines[3]).toMatch(/^INFO GET \/state\/default 401 \d+ms$/)
      const all = server.logs.join("\n")
      for (const secret of [marker, "s3cret-pa55", "Basic ", Buffer.from("terraform:s3cret-pa55").toString("base64"), "ID="]) {
        expect(all).not.toContain(secret)
      }
    }))
})

describe("URL space and malformed input", () => {
  it("paths, methods and bodies that are not the protocol's are 4xx with JSON bodies, never redirects", () =>
    withServer(memoryBackend(), {}, async (server: MemoryServer) => {
      const call = async (method: string, path: string, init: RequestInit = {}) => {
        const reply = await fetch(`${server.url}${path}`, { method, redirect: "manual", ...init })
        expect(reply.status < 300 || reply.status >= 400).toBe(true)
        expect(reply.headers.get("location")).toBeNull()
        const text = await reply.text()
        return { status: reply.status, headers: reply.headers, body: text === "" ? undefined : JSON.parse(text) }
      }
      expect((await call("GET", "/")).status).toBe(404)
      expect((await call("GET", "/nope")).body.tag).toBe("NotFound")
      expect((await call("GET", "/statefoo")).status).toBe(404)
      expect((await call("GET", "/state/a/b/c/d/e")).status).toBe(404)
      expect((await call("GET", "/state/a/unknown")).status).toBe(404)
      expect((await call("GET", "/state//lock")).status).toBe(400)
      expect((await call("GET", "/state/%E0%A4%A")).body.tag).toBe("BadRequest")
      expect((await call("GET", "/state/")).body).toEqual(["default"])
      expect((await call("GET", "/state/default/")).status).toBe(204)
      const patch = await call("PATCH", "/state/default")
      expect(patch.status).toBe(405)
      expect(patch.headers.get("allow")).toContain("LOCK")
      expect((await call("POST", "/state")).status).toBe(405)
      expect((await call("POST", "/healthz")).status).toBe(404)

      const json = { "content-type": "application/json" }
      // Writes: empty, not JSON, bad Content-MD5.
      expect((await call("POST", "/state/default", { headers: json, body: "" })).status).toBe(400)
      expect((await call("POST", "/state/default", { headers: json, body: "not json" })).status).toBe(400)
      const body = tfStateJson(1)
      const badMd5 = await call("POST", "/state/default", { headers: { ...json, "content-md5": md5Base64("other") }, body })
      expect(badMd5.status).toBe(400)
      expect(badMd5.body.error).toMatch(/Content-MD5/)
      expect((await call("POST", "/state/default", { headers: { ...json, "content-md5": "garbage" }, body })).status)
        .toBe(400)
      expect((await call("POST", "/state/default", { headers: { ...json, "content-md5": md5Base64(body) }, body })).status)
        .toBe(200)
      // Locks: no body, garbage, a LockInfo without ID on UNLOCK.
      expect((await call("LOCK", "/state/default/lock")).status).toBe(400)
      expect((await call("LOCK", "/state/default/lock", { body: "{" })).status).toBe(400)
      expect((await call("UNLOCK", "/state/default/lock", { body: "{}" })).status).toBe(400)
      // DELETE on the state address with a body is an UNLOCK sent to the wrong place.
      const misdirected = await call("DELETE", "/state/gone", { headers: { "content-md5": md5Base64("") }, body: "" })
      expect(misdirected.status).toBe(400)
      expect(misdirected.body.error).toMatch(/unlock at \/state\/gone\/lock/)
      // A LOCK without ID gets one, returned in the 200 body (curl convenience).
      const locked = await call("LOCK", "/state/curl/lock", { body: JSON.stringify({ Who: "me" }) })
      expect(locked.status).toBe(200)
      expect(locked.body.ID).toMatch(/^[0-9a-f-]{36}$/)
      expect((await call("GET", "/state/curl/lock")).body.ID).toBe(locked.body.ID)
      expect((await call("UNLOCK", "/state/curl/lock", { body: JSON.stringify({ ID: locked.body.ID }) })).status).toBe(200)
      expect((await call("GET", "/state/curl/lock")).status).toBe(204)
    }))
})

describe("lifecycle", () => {
  it("graceful shutdown finishes in-flight requests, then stops listening", async () => {
    const slow = wrappedBackend((inner) => ({
      ...inner,
      getManifest: (repo, reference) => Effect.zipRight(Effect.sleep("300 millis"), inner.getManifest(repo, reference))
    }))
    const server = await startServer(slow, { shutdownTimeout: "5 seconds" })
    const inFlight = fetch(`${server.url}/state/default`)
    await sleep(100)
    const closing = server.close()
    const reply = await inFlight
    expect(reply.status).toBe(204)
    expect(reply.headers.get("connection")).toBe("close")
    await closing
    await expect(fetch(`${server.url}/healthz`)).rejects.toThrow()
    expect(server.logs.some((line) => line.includes("waiting for 1 in-flight request"))).toBe(true)
  })

  it("ServeError when the port is taken; Server.layer serves until released", async () => {
    const first = await startServer(memoryBackend())
    try {
      const port = Number(new URL(first.url).port)
      const error = await startServer(memoryBackend(), { port }).catch((e: unknown) => e)
      expect(error).toMatchObject({ _tag: "ServeError", reason: "the address is already in use" })
      expect(String((error as Error).message)).toContain(`127.0.0.1:${port}`)
    } finally {
      await first.close()
    }
    const launched = await Effect.runPromise(
      Effect.scoped(Effect.gen(function*() {
        yield* Layer.build(Server.layer({ port: 0 }).pipe(Layer.provide(memoryBackend()), Layer.provide(Logger.remove(Logger.defaultLogger))))
        return "served"
      }))
    )
    expect(launched).toBe("served")
  })
})

describe("backendBlock", () => {
  it("the block to paste, with LOCK/UNLOCK on the lock address", () => {
    expect(Server.backendBlock("http://127.0.0.1:8080")).toBe(
      [
        `terraform {`,
        `  backend "http" {`,
        `    address        = "http://127.0.0.1:8080/state/default"`,
        `    lock_address   = "http://127.0.0.1:8080/state/default/lock"`,
        `    unlock_address = "http://127.0.0.1:8080/state/default/lock"`,
        `    lock_method    = "LOCK"`,
        `    unlock_method  = "UNLOCK"`,
        `  }`,
        `}`,
        ``
      ].join("\n")
    )
  })

  it("a workspace with a slash, a username, POST/DELETE for proxies", () => {
    const block = Server.backendBlock("https://state.example.com/", {
      workspace: "team/prod",
      username: "terraform",
      methods: "post"
    })
    expect(block).toContain(`address        = "https://state.example.com/state/team%2Fprod"`)
    expect(block).toContain(`lock_address   = "https://state.example.com/state/team%2Fprod/lock"`)
    expect(block).toContain(`lock_method    = "POST"`)
    expect(block).toContain(`unlock_method  = "DELETE"`)
    expect(block).toContain(`username       = "terraform"`)
    expect(block).toContain("TF_HTTP_PASSWORD")
    expect(block).not.toMatch(/^\s*password\s*=/m)
  })

  it("escapes HCL template sequences and quotes", () => {
    const block = Server.backendBlock("http://h", { username: 'a"${b}%{c}\\' })
    expect(block).toContain('username       = "a\\"$${b}%%{c}\\\\"')
  })
})
