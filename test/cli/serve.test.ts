/**
 * `oras-state serve` as a subprocess: the backend block on stdout once listening (human and
 * `--json`), the store it serves, Basic auth from `--password-env`, graceful stop on SIGTERM.
 */
import { spawn } from "node:child_process"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { baseEnv, bin, cleanup, ensureBuilt, expectExit, errorLine, root, run, stateV1, tempDir, writeJson } from "./support.js"

beforeAll(() => ensureBuilt(), 120_000)
afterAll(() => cleanup())

interface Served {
  readonly stdout: () => string
  readonly stderr: () => string
  readonly stop: (signal?: NodeJS.Signals) => Promise<number | null>
}

/** Start `serve`, resolve once stdout holds `ready(stdout)`. */
const serve = (args: ReadonlyArray<string>, ready: (stdout: string) => boolean, env: Record<string, string> = {}) =>
  new Promise<Served>((resolve, reject) => {
    const child = spawn(process.execPath, [bin, "serve", "--port", "0", ...args], {
      cwd: root,
      env: { ...baseEnv(), ...env },
      stdio: ["ignore", "pipe", "pipe"]
    })
    let out = ""
    let err = ""
    const exited = new Promise<number | null>((done) => child.on("exit", (code) => done(code)))
    const served: Served = {
      stdout: () => out,
      stderr: () => err,
      stop: (signal = "SIGTERM") => {
        child.kill(signal)
        return exited
      }
    }
    const timer = setTimeout(() => {
      child.kill("SIGKILL")
      reject(new Error(`serve did not start: ${err}`))
    }, 30_000)
    child.stdout.on("data", (b: Buffer) => {
      out += b.toString()
      if (ready(out)) {
        clearTimeout(timer)
        resolve(served)
      }
    })
    child.stderr.on("data", (b: Buffer) => (err += b.toString()))
    void exited.then((code) => {
      clearTimeout(timer)
      reject(new Error(`serve exited with ${code}: ${err}`))
    })
  })

const urlIn = (text: string) => /http:\/\/127\.0\.0\.1:\d+/.exec(text)?.[0]

describe.concurrent("serve", () => {
  it("prints the backend block, serves the store, stops on SIGTERM", async () => {
    const store = tempDir("serve")
    const state = writeJson(tempDir("servefiles"), "v1.json", stateV1())
    expectExit(await run(["state", "push", state, "--store", store]), 0)

    const server = await serve(["--store", store], (out) => out.includes("unlock_method"))
    const url = urlIn(server.stdout())!
    expect(server.stdout()).toContain(`served on ${url}`)
    expect(server.stdout()).toContain(`address        = "${url}/state/default"`)
    expect(server.stdout()).toContain(`lock_method    = "LOCK"`)
    const health = await fetch(`${url}/healthz`)
    expect(health.status).toBe(200)
    const got = await fetch(`${url}/state/default`)
    expect(got.status).toBe(200)
    expect(await got.json()).toEqual(stateV1())
    const code = await server.stop()
    expect(code).toBe(130)
    expect(server.stderr()).toMatch(/GET \/state\/default 200 \d+ms/)
  }, 180_000)

  it("--json and Basic auth from --password-env", async () => {
    const store = tempDir("serveauth")
    const server = await serve(
      ["--store", store, "--json", "--username", "terraform", "--password-env", "SERVE_PW"],
      (out) => out.trimEnd().endsWith("}"),
      { SERVE_PW: "pa55-word" }
    )
    const doc = JSON.parse(server.stdout()) as { url: string; store: string; backend: string }
    expect(doc.store).toBe(`oci-layout:${store} (repository default)`)
    expect(doc.backend).toContain(`username       = "terraform"`)
    expect(doc.backend).not.toContain("pa55-word")
    expect((await fetch(`${doc.url}/state/default`)).status).toBe(401)
    const authorized = await fetch(`${doc.url}/state/default`, {
      headers: { authorization: `Basic ${Buffer.from("terraform:pa55-word").toString("base64")}` }
    })
    expect(authorized.status).toBe(204)
    expect(await server.stop("SIGINT")).toBe(130)
  }, 180_000)

  it("--username without a password variable is a usage error", async () => {
    const missing = await run(["serve", "--port", "0", "--username", "u", "--password-env", "NOT_SET_ANYWHERE"])
    expect(missing.code, missing.stderr).toBe(2)
    expect(errorLine(missing).tag).toBe("UsageError")
    const alone = await run(["serve", "--port", "0", "--username", "u"])
    expect(alone.code, alone.stderr).toBe(2)
  }, 180_000)
})
