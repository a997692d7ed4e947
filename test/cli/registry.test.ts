/**
 * The built `oras-state` binary against the real distribution 2.8 registry (plain HTTP): the
 * state, versions, lock and workspace commands on `--repository 127.0.0.1:PORT/cli-test/<unique>`,
 * `TF_BACKEND_ORAS_REPOSITORY`, and the exit codes of an unreachable registry.
 */
import * as Fs from "node:fs"
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest"
import {
  cleanup,
  ensureBuilt,
  expectExit,
  errorLine,
  holderInfo,
  json,
  listTags,
  lockOnRegistry,
  run,
  stateV1,
  stateV2,
  tempDir,
  text,
  uniqueRepository,
  writeJson
} from "./support.js"

const registries = inject("registries")
const plain = registries.plain

beforeAll(() => ensureBuilt(), 120_000)
afterAll(() => cleanup())

describe.concurrent("plain registry", () => {
  it("push, pull, versions, diff and restore", async () => {
    const repository = uniqueRepository("flow")
    const target = ["--repository", `${plain.host}/${repository}`]
    const files = tempDir("regflow")
    const v1 = writeJson(files, "v1.json", stateV1())
    const s = (...args: Array<string>) => run([...args, ...target])

    expectExit(await s("state", "push", v1, "prod"), 0)
    // `-` followed by a workspace and options.
    const second = await run(["state", "push", "-", "prod", "--json", ...target], { input: text(stateV2()) })
    expect(second.code, second.stderr).toBe(0)
    expect(json(second)).toMatchObject({ workspace: "prod", pushed: true, version: 2 })

    const [pulled, versionsRun, diffRun, shown] = await Promise.all([
      s("state", "pull", "prod"),
      s("versions", "list", "prod", "--json"),
      s("versions", "diff", "1", "2", "prod", "--json"),
      s("versions", "show", "1", "prod")
    ])
    expect(pulled.code, pulled.stderr).toBe(0)
    expect(JSON.parse(pulled.stdout)).toEqual(stateV2())

    const versions = json(versionsRun)
    expect(versions.versions).toHaveLength(2)
    expect(versions.versions[0]).toMatchObject({ version: 1, current: false })
    expect(versions.versions[1]).toMatchObject({ version: 2, current: true })
    expect(versions.versions[1].digest).toMatch(/^sha256:[0-9a-f]{64}$/)

    const diff = json(diffRun)
    expect(diff.resources.added).toEqual(["aws_s3_bucket.this[\"logs\"]"])
    expect(diff.resources.removed).toEqual(["aws_instance.web[1]", "module.network.data.aws_vpc.main"])
    expect(diff.resources.changed).toEqual([{ address: "aws_instance.web[0]", attributes: ["ami", "tags"], meta: [] }])
    expect(diff.outputs.changed).toContainEqual({ name: "db_password", sensitive: true, from: "(sensitive)", to: "(sensitive)" })

    expect(shown.stdout).toBe(Fs.readFileSync(v1, "utf8"))

    const restored = await s("versions", "restore", "1", "prod")
    expect(restored.code, restored.stderr).toBe(0)
    expect(restored.stdout).toMatch(/^restored version 1 of workspace "prod" as version 3 \(sha256:[0-9a-f]{12}\)\n$/)
    const [afterRestore, lineage, workspaces] = await Promise.all([
      s("state", "pull", "prod"),
      s("state", "push", writeJson(files, "other.json", { ...stateV2(), serial: 10, lineage: "another" }), "prod"),
      s("workspaces", "list", "--json")
    ])
    expect(JSON.parse(afterRestore.stdout)).toEqual(stateV1())
    expect(lineage.code, lineage.stderr).toBe(3)
    expect(errorLine(lineage).tag).toBe("StateMismatch")
    expect(json(workspaces).workspaces).toEqual(["default", "prod"])
    expectExit(await s("workspaces", "delete", "prod"), 0)
    expect(json(await s("workspaces", "list", "--json")).workspaces).toEqual(["default"])
    // Exact deletion: nothing of prod is left in the repository.
    expect((await listTags(plain.url, repository)).filter((t) => t.includes("prod"))).toEqual([])
  }, 180_000)

  it("lock show and force-unlock of a lock taken through the library; the repository from the environment", async () => {
    const repository = uniqueRepository("lock")
    const env = { TF_BACKEND_ORAS_REPOSITORY: `${plain.host}/${repository}` }
    const id = await lockOnRegistry(plain.host, repository)

    const [shown, human, restore] = await Promise.all([
      run(["lock", "show", "--json"], { env }),
      run(["lock", "show"], { env }),
      run(["versions", "restore", "1"], { env })
    ])
    expect(shown.code, shown.stderr).toBe(3)
    expect(json(shown)).toMatchObject({ locked: true, lock: { ...holderInfo, ID: id, Path: expect.any(String) }, writer: "oras-state" })
    expect(human.code, human.stderr).toBe(3)
    expect(human.stdout).toMatch(/^  Who:\s+alice@ci-runner-7$/m)

    expect(restore.code, restore.stderr).toBe(3)
    expect(errorLine(restore).tag).toBe("LockConflict")

    const removed = await run(["lock", "force-unlock", "--yes"], { env })
    expect(removed.code, removed.stderr).toBe(0)
    expect(removed.stdout).toMatch(new RegExp(`^  ID:\\s+${id}$`, "m"))
    expect(removed.stdout).toContain(`removed lock ${id} of workspace "default"`)
    expect(json(await run(["lock", "show", "--json"], { env }))).toEqual({ workspace: "default", locked: false })
  }, 180_000)

  it("an unreachable registry exits 5 with one error line (and a JSON error document)", async () => {
    const env = { TF_BACKEND_ORAS_RETRY_MAX: "0" }
    const result = await run(["workspaces", "list", "--repository", "127.0.0.1:1/nothing/here"], { env })
    expect(result.code, result.stderr).toBe(5)
    expect(result.stdout).toBe("")
    expect(errorLine(result).tag).toBe("TransientRegistry")
    const asJson = await run(["lock", "show", "--json", "--repository", "127.0.0.1:1/nothing/here"], { env })
    expect(asJson.code, asJson.stderr).toBe(5)
    expect(json(asJson).error).toMatchObject({ tag: "TransientRegistry", exitCode: 5 })
  }, 180_000)

  it("missing credentials exit 6", async () => {
    const result = await run(["workspaces", "list", "--repository", `${registries.htpasswd.host}/${uniqueRepository("auth")}`])
    expect(result.code, result.stderr).toBe(6)
    expect(errorLine(result).tag).toBe("Unauthorized")
  }, 180_000)
})
