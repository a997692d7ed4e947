/**
 * `oras-state doctor` against the real distribution 2.8 registries: anonymous (plain), Basic
 * (htpasswd) and bearer-token auth, with credentials from a docker `config.json` under a
 * temporary HOME; the capability table, the JSON report, and the cleanup.
 */
import * as Fs from "node:fs"
import * as Path from "node:path"
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest"
import { TEST_USERS } from "../support/fixtures.js"
import { cleanup, ensureBuilt, errorLine, json, listTags, run, tempDir, uniqueRepository } from "./support.js"

const registries = inject("registries")

beforeAll(() => ensureBuilt(), 120_000)
afterAll(() => cleanup())

const dockerHome = (host: string): string => {
  const home = tempDir("dockerhome")
  Fs.mkdirSync(Path.join(home, ".docker"))
  const auth = Buffer.from(`${TEST_USERS.writer.username}:${TEST_USERS.writer.password}`).toString("base64")
  Fs.writeFileSync(Path.join(home, ".docker", "config.json"), JSON.stringify({ auths: { [host]: { auth } } }))
  return home
}

const resultsOf = (report: { checks: Array<{ id: string; result: string }> }) =>
  Object.fromEntries(report.checks.map((c) => [c.id, c.result]))

describe.concurrent("doctor", () => {
  it("plain registry: capability table, JSON report, cleanup", async () => {
    const repository = uniqueRepository("doctor")
    const human = await run(["doctor", "--repository", `${registries.plain.host}/${repository}`])
    expect(human.code, human.stderr).toBe(0)
    expect(human.stdout).toContain(`registry:   ${registries.plain.url}`)
    expect(human.stdout).toMatch(/^CAPABILITY\s+RESULT\s+DETAIL$/m)
    expect(human.stdout).toMatch(/^auth\s+anonymous\s+no challenge$/m)
    expect(human.stdout).toMatch(/^push\/pull\s+ok\s/m)
    expect(human.stdout).toMatch(/^tag listing read-after-write\s+consistent\s/m)
    // distribution 2.8 refuses deletion by tag (400 DIGEST_INVALID) and deletes by digest.
    expect(human.stdout).toMatch(/^manifest DELETE by tag\s+unsupported\s+HTTP 400/m)
    expect(human.stdout).toMatch(/^manifest DELETE by digest\s+supported\s/m)
    expect(human.stdout).toMatch(/^tag pagination \(n=1\)\s+(honoured|ignored)\s/m)
    expect(human.stdout).toMatch(/^cleanup\s+done\s/m)

    const report = json(await run(["doctor", "--json", "--repository", `${registries.plain.host}/${repository}`]))
    expect(report).toMatchObject({ registry: registries.plain.url, repository })
    expect(report.namespace).toMatch(/^oras-state-doctor-[0-9a-f]{12}$/)
    const results = resultsOf(report)
    expect(results).toMatchObject({
      auth: "anonymous",
      "push-pull": "ok",
      "tag-list-consistency": "consistent",
      "delete-tag": "unsupported",
      "delete-digest": "supported",
      cleanup: "done"
    })
    expect(["honoured", "ignored"]).toContain(results["pagination"])
    for (const check of report.checks) expect(Object.keys(check).sort()).toEqual(["detail", "id", "label", "ok", "result"])
    // The probes cleaned up after themselves.
    expect((await listTags(registries.plain.url, repository)).filter((t) => t.startsWith("oras-state-doctor-"))).toEqual([])
  }, 180_000)

  it("htpasswd registry with docker config credentials: basic", async () => {
    const home = dockerHome(registries.htpasswd.host)
    const result = await run(["doctor", "--json", "--repository", `${registries.htpasswd.host}/${uniqueRepository("basic")}`], {
      env: { HOME: home }
    })
    expect(result.code, result.stderr).toBe(0)
    const auth = json(result).checks.find((c: { id: string }) => c.id === "auth")
    expect(auth).toMatchObject({ result: "basic", ok: true, detail: "challenge: basic" })
    expect(result.stdout).not.toContain(TEST_USERS.writer.password)
  }, 180_000)

  it("token registry with docker config credentials: bearer", async () => {
    const home = dockerHome(registries.token.host)
    const result = await run(["doctor", "--repository", `${registries.token.host}/${uniqueRepository("bearer")}`], {
      env: { HOME: home }
    })
    expect(result.code, result.stderr).toBe(0)
    expect(result.stdout).toMatch(/^auth\s+bearer\s+challenge: bearer; token from 127\.0\.0\.1:\d+ with credentials$/m)
    expect(result.stdout).toMatch(/^push\/pull\s+ok\s/m)
    expect(result.stdout).not.toContain(TEST_USERS.writer.password)
  }, 180_000)

  it("no credentials for a protected registry: the table says why, exit 6", async () => {
    const result = await run(["doctor", "--repository", `${registries.htpasswd.host}/${uniqueRepository("anon")}`])
    expect(result.code, result.stderr).toBe(6)
    expect(result.stdout).toMatch(/^auth\s+anonymous\s+challenge: basic; no credentials found for this registry$/m)
    expect(result.stdout).toMatch(/^push\/pull\s+failed\s+Unauthorized: /m)
    expect(errorLine(result).tag).toBe("Unauthorized")
  }, 180_000)

  it("unreachable registry: exit 5", async () => {
    const result = await run(["doctor", "--repository", "127.0.0.1:1/nothing"], { env: { TF_BACKEND_ORAS_RETRY_MAX: "0" } })
    expect(result.code, result.stderr).toBe(5)
    expect(result.stdout).toMatch(/^push\/pull\s+failed\s+TransientRegistry: /m)
    expect(errorLine(result).tag).toBe("TransientRegistry")
  }, 180_000)
})
