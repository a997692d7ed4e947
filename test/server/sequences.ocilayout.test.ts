/**
 * Terraform/OpenTofu request sequences against a server over the embedded OCI-layout store, and a
 * second OS process reading that store (with nothing but `node:fs`) while the server writes.
 */
import { afterAll, describe, expect, it } from "@effect/vitest"
import { Layer } from "effect"
import { spawn } from "node:child_process"
import * as NodeFs from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import * as OciLayoutRegistry from "../../src/OciLayoutRegistry.js"
import * as StateBackend from "../../src/StateBackend.js"
import * as WireFormat from "../../src/WireFormat.js"
import { sequenceSuite } from "./sequences.js"
import { startServer, TfClient, tfStateJson } from "./support.js"

const base = NodeFs.mkdtempSync(join(tmpdir(), "oras-state-server-"))
let counter = 0
const freshDir = () => {
  const dir = join(base, `store-${++counter}`)
  NodeFs.mkdirSync(dir)
  return dir
}
afterAll(() => NodeFs.rmSync(base, { recursive: true, force: true }))

const repository = "team/infra-state"
const backend = (dir: string, options: OciLayoutRegistry.Options = {}) =>
  StateBackend.layer({ repository, versioning: { enabled: true, maxVersions: 5 } }).pipe(
    Layer.provide(OciLayoutRegistry.layer(dir, options))
  )

describe("server sequences over OciLayoutRegistry", () => {
  // Without fsync: the protocol does not depend on it, and the suite stays fast on loaded machines.
  sequenceSuite({ backend: () => backend(freshDir(), { durable: false }) })
})

const reader = fileURLToPath(new URL("../support/workers/ociLayoutReader.mjs", import.meta.url))

/** `node ociLayoutReader.mjs layout stop tags…`: its JSON counts once the stop file appears. */
const runReader = (layout: string, stop: string, tags: ReadonlyArray<string>) =>
  new Promise<any>((resolve, reject) => {
    const child = spawn(process.execPath, [reader, layout, stop, ...tags], { stdio: ["ignore", "pipe", "pipe"] })
    let out = ""
    let err = ""
    child.stdout.on("data", (d) => (out += d))
    child.stderr.on("data", (d) => (err += d))
    child.on("error", reject)
    child.on("exit", (code) => (code === 0 ? resolve(JSON.parse(out)) : reject(new Error(`reader exited ${code}: ${err}`))))
  })

describe("the OCI-layout store under a writing server", () => {
  it("a second process reading the store never sees a torn state", async () => {
    const dir = freshDir()
    const server = await startServer(backend(dir))
    const stop = join(base, `stop-${Date.now()}`)
    const stateTag = WireFormat.stateTag(WireFormat.workspaceTag("default"))
    const reading = runReader(join(dir, repository), stop, [stateTag])
    try {
      const client = new TfClient({ server: server.url })
      expect((await client.lock("OperationTypeApply")).status).toBe(200)
      // States of varying size, so that a torn write would show as a size or digest mismatch.
      for (let serial = 1; serial <= 30; serial++) {
        const state = tfStateJson(serial).replace("\"resources\": []", `"resources": [${"0,".repeat(serial * 97)}0]`)
        expect((await client.put(state)).status).toBe(200)
      }
      expect((await client.unlock()).status).toBe(200)
    } finally {
      NodeFs.writeFileSync(stop, "")
      await server.close()
    }
    const counts = await reading
    expect(counts.errors).toEqual([])
    expect(counts.torn + counts.missing + counts.mismatched).toBe(0)
    expect(counts.reads).toBeGreaterThan(0)
  })
})
