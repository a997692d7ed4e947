// A state writer in its own OS process, for the crash test: it builds the library's layers
// (through dist/), prints "ready", waits for "go <serial>" on stdin, then puts states
// serial, serial + 1, … in a loop until it is killed (the test SIGKILLs it at a random point).
//
// Every line goes to stdout synchronously (fs.writeSync: nothing is lost when the process dies):
//   ready
//   start <serial> <sha256 hex of the state> <bytes>   before a put
//   req <METHOD> <path>                                  before every HTTP request (the put's phases)
//   done <serial> <manifest digest> <milliseconds>       after a put
import * as PlatformHttpClient from "@effect/platform/HttpClient"
import { Effect, Layer } from "effect"
import { createHash } from "node:crypto"
import { writeSync } from "node:fs"
// The modules it needs, not the barrel (dist/index.js pulls in the CLI and server too): start-up
// time is what bounds the number of trials per minute.
import * as Credentials from "../../../dist/Credentials.js"
import * as HttpRegistry from "../../../dist/HttpRegistry.js"
import * as RateLimiter from "../../../dist/RateLimiter.js"
import * as StateBackend from "../../../dist/StateBackend.js"

const [host, repository, workspace, minText, maxText] = process.argv.slice(2)
const minBytes = Number(minText)
const maxBytes = Number(maxText)

const say = (line) => writeSync(1, `${line}\n`)

/** A Terraform-like state for `serial`: JSON padded with bytes derived from the serial. */
const stateFor = (serial) => {
  let x = (serial * 2654435761) >>> 0 || 1
  const size = minBytes + ((serial * 7919) % Math.max(1, maxBytes - minBytes + 1))
  const pad = Buffer.alloc(size)
  for (let i = 0; i < size; i++) {
    x ^= x << 13
    x ^= x >>> 17
    x ^= x << 5
    pad[i] = 97 + ((x >>> 0) % 26)
  }
  return new TextEncoder().encode(JSON.stringify({ version: 4, serial, lineage: "crash-test", pad: pad.toString("latin1") }))
}

const transformClient = (client) =>
  PlatformHttpClient.tapRequest(client, (request) =>
    Effect.sync(() => say(`req ${request.method} ${new URL(request.url).pathname}`)))

const registry = HttpRegistry.layerNode({
  registry: host,
  retry: { maxRetries: 2, waitMin: "20 millis", waitMax: "200 millis" },
  transformClient
}).pipe(Layer.provide(Credentials.layerNone), Layer.provide(RateLimiter.layerUnlimited))

const go = new Promise((resolve) => {
  let buffered = ""
  process.stdin.on("data", (chunk) => {
    buffered += chunk.toString()
    const match = /go (\d+)\n/.exec(buffered)
    if (match !== null) resolve(Number(match[1]))
  })
})

const program = Effect.gen(function*() {
  const sm = yield* (yield* StateBackend.StateBackend).stateManager(workspace)
  say("ready")
  const first = yield* Effect.promise(() => go)
  for (let serial = first;; serial++) {
    const data = stateFor(serial)
    say(`start ${serial} ${createHash("sha256").update(data).digest("hex")} ${data.byteLength}`)
    const started = performance.now()
    const result = yield* sm.put(data)
    say(`done ${serial} ${result.digest} ${(performance.now() - started).toFixed(1)}`)
  }
})

Effect.runPromise(program.pipe(Effect.provide(StateBackend.layer({ repository }).pipe(Layer.provide(registry))), Effect.scoped)).catch(
  (error) => {
    process.stderr.write(`crash writer failed: ${error}\n`)
    process.exit(1)
  }
)
