/**
 * The built `oras-state` binary against the embedded OCI-layout store (`--store DIR`): every
 * command's human and `--json` output and exit codes, usage errors, progress lines.
 */
import * as Fs from "node:fs"
import * as Path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import {
  cleanup,
  ensureBuilt,
  expectExit,
  hasScript,
  errorLine,
  holderInfo,
  json,
  lockEmbedded,
  run,
  runOnTerminal,
  stateV1,
  stateV2,
  tempDir,
  text,
  writeJson
} from "./support.js"

beforeAll(() => ensureBuilt(), 120_000)
afterAll(() => cleanup())

describe.concurrent("embedded store", () => {
  it("state push/pull, versions list/show/diff/restore, lineage and serial checks", async () => {
    const store = tempDir("flow")
    const files = tempDir("files")
    const s = (...args: Array<string>) => run([...args, "--store", store])
    const v1 = writeJson(files, "v1.json", stateV1())
    const v2 = writeJson(files, "v2.json", stateV2())

    const empty = await s("state", "pull")
    expect(empty.code, empty.stderr).toBe(4)
    expect(errorLine(empty)).toEqual({ tag: "NotFound", message: "workspace \"default\" has no state" })
    expect(empty.stdout).toBe("")

    const first = await s("state", "push", v1)
    expect(first.code, first.stderr).toBe(0)
    expect(first.stdout).toMatch(/^pushed .* to workspace "default" as version 1 \(sha256:[0-9a-f]{12}\)\n$/)

    // From stdin, with --json.
    const second = await run(["state", "push", "-", "--json", "--store", store], { input: text(stateV2()) })
    expect(second.code, second.stderr).toBe(0)
    expect(json(second)).toMatchObject({ workspace: "default", pushed: true, version: 2, serial: 2 })

    // Refused or no-op writes (sequential: each takes the lock), alongside the reads.
    const refusals = async () => ({
      older: await s("state", "push", v1),
      sameSerial: await s("state", "push", writeJson(files, "v2b.json", { ...stateV2(), terraform_version: "1.9.6" })),
      foreign: await run([
        "state",
        "push",
        writeJson(files, "foreign.json", { ...stateV2(), serial: 9, lineage: "other" }),
        "--store",
        store,
        "--json"
      ]),
      unchanged: await s("state", "push", v2)
    })
    const out = Path.join(files, "out.json")
    const [r, notState, missing, pulled, pulledJson, toFile, list, listed, show1, showMissing, diff, diffJson] = await Promise.all([
      refusals(),
      s("state", "push", writeJson(files, "junk.json", "not json at all")),
      s("state", "push", Path.join(files, "nope.json")),
      s("state", "pull"),
      s("state", "pull", "--json"),
      s("state", "pull", "-o", out, "--json"),
      s("versions", "list"),
      s("versions", "list", "--json"),
      s("versions", "show", "1"),
      s("versions", "show", "7"),
      s("versions", "diff", "1", "2"),
      s("versions", "diff", "1", "current", "--json")
    ])

    // Terraform's import rules: lower serial, same serial with other content, another lineage.
    expect(r.older.code, r.older.stderr).toBe(3)
    expect(errorLine(r.older).tag).toBe("StateMismatch")
    expect(errorLine(r.older).message).toContain("serial 1 over a newer state with serial 2")
    expect(r.sameSerial.code, r.sameSerial.stderr).toBe(3)
    expect(errorLine(r.sameSerial).message).toContain("same serial")
    expect(r.foreign.code, r.foreign.stderr).toBe(3)
    expect(json(r.foreign).error).toMatchObject({ tag: "StateMismatch", exitCode: 3 })
    expect(json(r.foreign).error.message).toContain("lineage \"other\" over unrelated state with lineage \"6f0c3a52-lineage-one\"")
    expect(r.unchanged.code, r.unchanged.stderr).toBe(0)
    expect(r.unchanged.stdout).toContain("state unchanged")
    expect(notState.code, notState.stderr).toBe(1)
    expect(errorLine(notState).tag).toBe("InvalidState")
    expect(missing.code, missing.stderr).toBe(4)
    expect(errorLine(missing).tag).toBe("NotFound")

    expect(pulled.code, pulled.stderr).toBe(0)
    expect(pulled.stdout).toBe(Fs.readFileSync(v2, "utf8"))
    expect(json(pulledJson)).toMatchObject({ workspace: "default", version: 2, state: stateV2() })
    expect(json(toFile)).toMatchObject({ version: 2, file: out })
    expect(Fs.readFileSync(out, "utf8")).toBe(Fs.readFileSync(v2, "utf8"))

    expect(list.code, list.stderr).toBe(0)
    const rows = list.stdout.trim().split("\n")
    expect(rows[0]).toMatch(/^VERSION\s+DIGEST\s+SIZE\s+UPDATED\s+CURRENT$/)
    expect(rows).toHaveLength(3)
    expect(rows[2]).toMatch(/^2\s+sha256:[0-9a-f]{12}\s+.*\*$/)
    expect(json(listed).versions.map((v: { version: number; current: boolean }) => [v.version, v.current])).toEqual([[1, false], [2, true]])

    expect(show1.code, show1.stderr).toBe(0)
    expect(show1.stdout).toBe(Fs.readFileSync(v1, "utf8"))
    expect(showMissing.code, showMissing.stderr).toBe(4)
    expect(errorLine(showMissing)).toEqual({ tag: "NotFound", message: "workspace \"default\" has no version 7" })

    expect(diff.code, diff.stderr).toBe(0)
    const lines = diff.stdout.split("\n")
    expect(lines[0]).toBe("workspace \"default\": version 1 (serial 1) → version 2 (serial 2)")
    expect(diff.stdout).toMatch(/^added\s+aws_s3_bucket\.this\["logs"\]\s*$/m)
    expect(diff.stdout).toMatch(/^removed\s+aws_instance\.web\[1\]\s*$/m)
    expect(diff.stdout).toMatch(/^removed\s+module\.network\.data\.aws_vpc\.main\s*$/m)
    expect(diff.stdout).toMatch(/^changed\s+aws_instance\.web\[0\]\s+attributes: ami, tags$/m)
    expect(diff.stdout).not.toContain("aws_subnet")
    expect(diff.stdout).toMatch(/^changed\s+ip\s+"10\.0\.0\.1"\s+"10\.0\.0\.2"$/m)
    expect(diff.stdout).toMatch(/^changed\s+db_password\s+\(sensitive\)\s+\(sensitive\)$/m)
    expect(diff.stdout).toMatch(/^removed\s+removed_later\s+42$/m)
    expect(diff.stdout).not.toContain("hunter")
    expect(diff.stdout).toContain("resources: 1 added, 2 removed, 1 changed; outputs: 1 added, 1 removed, 2 changed")

    const d = json(diffJson)
    expect(d.resources).toEqual({
      added: ["aws_s3_bucket.this[\"logs\"]"],
      removed: ["aws_instance.web[1]", "module.network.data.aws_vpc.main"],
      changed: [{ address: "aws_instance.web[0]", attributes: ["ami", "tags"], meta: [] }]
    })
    expect(d.outputs).toEqual({
      added: [{ name: "bucket", sensitive: false, value: { name: "logs-bucket", arn: "arn:aws:s3:::logs-bucket" } }],
      removed: [{ name: "removed_later", sensitive: false, value: 42 }],
      changed: [
        { name: "db_password", sensitive: true, from: "(sensitive)", to: "(sensitive)" },
        { name: "ip", sensitive: false, from: "10.0.0.1", to: "10.0.0.2" }
      ]
    })
    expect(d.from).toMatchObject({ version: 1, serial: 1, lineage: "6f0c3a52-lineage-one" })
    expect(d.to).toMatchObject({ ref: "current", version: 2, serial: 2 })
    expect(d.summary).toEqual({ resources: { added: 1, removed: 2, changed: 1 }, outputs: { added: 1, removed: 1, changed: 2 } })
    expect(JSON.stringify(d)).not.toContain("hunter")

    const restore = await s("versions", "restore", "1", "--json")
    expect(restore.code, restore.stderr).toBe(0)
    expect(json(restore)).toMatchObject({ workspace: "default", restored: 1, version: 3 })
    const [afterRestore, restoreMissing] = await Promise.all([s("state", "pull"), s("versions", "restore", "99")])
    expect(afterRestore.stdout).toBe(Fs.readFileSync(v1, "utf8"))
    expect(restoreMissing.code, restoreMissing.stderr).toBe(4)
    expect(errorLine(restoreMissing).tag).toBe("NotFound")

    // --force overrides the lineage check.
    const forced = await s("state", "push", Path.join(files, "foreign.json"), "--force")
    expect(forced.code, forced.stderr).toBe(0)
    expect(forced.stdout).toContain("as version 4")
  }, 180_000)

  it("lock show and force-unlock on a lock taken through the library", async () => {
    const store = tempDir("lock")
    const files = tempDir("lockfiles")
    const s = (...args: Array<string>) => run([...args, "--store", store])

    const unlocked = await s("lock", "show")
    expect(unlocked.code, unlocked.stderr).toBe(0)
    expect(unlocked.stdout).toBe("workspace \"default\" is not locked\n")
    expect(json(await s("lock", "show", "--json"))).toEqual({ workspace: "default", locked: false })

    const id = await lockEmbedded(store)
    const v1 = writeJson(files, "v1.json", stateV1())
    // None of these changes anything.
    const [shown, shownJson, push, pushJson, refused, wrongId] = await Promise.all([
      s("lock", "show"),
      s("lock", "show", "--json"),
      s("state", "push", v1),
      s("state", "push", v1, "--json"),
      s("lock", "force-unlock"),
      s("lock", "force-unlock", "--id", "not-the-holder", "--yes")
    ])
    expect(shown.code, shown.stderr).toBe(3)
    expect(shown.stdout).toContain("workspace \"default\" is locked")
    expect(shown.stdout).toMatch(new RegExp(`^  ID:\\s+${id}$`, "m"))
    expect(shown.stdout).toMatch(/^  Who:\s+alice@ci-runner-7$/m)
    expect(shown.stdout).toMatch(/^  Operation:\s+OperationTypeApply$/m)
    expect(shown.stdout).toMatch(/^  Created:\s+2025-01-02T03:04:05\.123456Z$/m)
    expect(shown.stdout).toMatch(/^  Expires:\s+never \(no lease\)$/m)
    expect(shownJson.code, shownJson.stderr).toBe(3)
    expect(json(shownJson)).toMatchObject({
      workspace: "default",
      locked: true,
      lock: { ...holderInfo, ID: id, Path: expect.any(String) },
      expiresAt: null,
      writer: "oras-state"
    })

    // Writers refuse while locked.
    expect(push.code, push.stderr).toBe(3)
    expect(errorLine(push).tag).toBe("LockConflict")
    expect(errorLine(push).message).toContain(`by alice@ci-runner-7 for OperationTypeApply`)
    expect(json(pushJson).error).toMatchObject({ tag: "LockConflict", exitCode: 3, lock: { ID: id, Who: "alice@ci-runner-7" } })

    // No terminal, no --yes: refused, the holder shown, the lock kept; a wrong --id refused.
    expect(refused.code, refused.stderr).toBe(2)
    expect(refused.stdout).toContain(id)
    expect(errorLine(refused).tag).toBe("UsageError")
    expect(wrongId.code, wrongId.stderr).toBe(3)
    expect(errorLine(wrongId).tag).toBe("LockIdMismatch")
    expectExit(await s("lock", "show"), 3)

    const removed = await s("lock", "force-unlock", "--id", id, "--yes", "--json")
    expect(removed.code, removed.stderr).toBe(0)
    expect(json(removed)).toEqual({ workspace: "default", removed: { ...holderInfo, ID: id, Path: expect.any(String) } })
    const [after, again] = await Promise.all([s("lock", "show"), s("lock", "force-unlock", "-y")])
    expect(after.code, after.stderr).toBe(0)
    expect(again.code, again.stderr).toBe(0)
    expect(again.stdout).toContain("is not locked; nothing to do")
  }, 180_000)

  it("force-unlock asks on a terminal; a lease shows its expiry", async () => {
    const store = tempDir("tty")
    const id = await lockEmbedded(store, "default", 600)
    const shown = await run(["lock", "show", "--store", store])
    expectExit(shown, 3)
    expect(shown.stdout).toMatch(/^  Expires:\s+\d{4}-\d\d-\d\dT[\d:.]+Z \(in (9m \d+s|10m 0s)\)$/m)
    expect(json(await run(["lock", "show", "--json", "--store", store])).expiresAt).toMatch(/^\d{4}-\d\d-\d\dT/)
    if (!hasScript) return

    const declined = await runOnTerminal(["lock", "force-unlock", "--store", store], "(y/N)", "n")
    expect(declined.code, declined.output).toBe(1)
    expect(declined.output).toContain(`Remove the lock ${id} held by alice@ci-runner-7?`)
    expect(declined.output).toContain("oras-state: Aborted: force-unlock declined; the lock is unchanged")
    expectExit(await run(["lock", "show", "--store", store]), 3)

    const accepted = await runOnTerminal(["lock", "force-unlock", "--store", store], "(y/N)", "y")
    expect(accepted.code, accepted.output).toBe(0)
    expect(accepted.output).toContain(`removed lock ${id} of workspace "default"`)
    expectExit(await run(["lock", "show", "--store", store]), 0)
  }, 180_000)

  it("workspaces list and delete", async () => {
    const store = tempDir("ws")
    const files = tempDir("wsfiles")
    const s = (...args: Array<string>) => run([...args, "--store", store])
    const v1 = writeJson(files, "v1.json", stateV1())

    expect(json(await s("workspaces", "list", "--json")).workspaces).toEqual(["default"])
    const pushes = await Promise.all([s("state", "push", v1, "dev"), s("state", "push", v1, "team-prod")])
    for (const p of pushes) expectExit(p, 0)
    const list = await s("workspaces", "list")
    expect(list.code, list.stderr).toBe(0)
    expect(list.stdout).toBe("default\ndev\nteam-prod\n")

    await lockEmbedded(store, "dev")
    const [locked, defaultWs, badName] = await Promise.all([
      s("workspaces", "delete", "dev"),
      s("workspaces", "delete", "default"),
      s("state", "pull", "bad\u0001name")
    ])
    expect(locked.code, locked.stderr).toBe(3)
    expect(errorLine(locked).tag).toBe("LockConflict")
    expect(defaultWs.code, defaultWs.stderr).toBe(2)
    expect(errorLine(defaultWs).tag).toBe("InvalidReference")
    expect(badName.code, badName.stderr).toBe(2)
    expect(errorLine(badName).tag).toBe("InvalidReference")

    const forced = await s("workspaces", "delete", "dev", "--force", "--json")
    expect(forced.code, forced.stderr).toBe(0)
    expect(json(forced)).toEqual({ workspace: "dev", deleted: true })
    expect(json(await s("workspaces", "list", "--json")).workspaces).toEqual(["default", "team-prod"])
  }, 180_000)

  it("usage errors exit 2; --help documents the exit codes", async () => {
    const store = tempDir("usage")
    const help = await run(["--help"])
    expect(help.code, help.stderr).toBe(0)
    expect(help.stdout).toContain("EXIT CODES")
    expect(help.stdout).toMatch(/3\s+locked or conflicting/)
    const lockHelp = await run(["lock", "show", "--help"])
    expect(lockHelp.code, lockHelp.stderr).toBe(0)
    expect(lockHelp.stdout).toContain("Exit code 0: unlocked, 3: locked")

    const cases: ReadonlyArray<ReadonlyArray<string>> = [
      [],
      ["frobnicate"],
      ["versions"],
      ["versions", "show"],
      ["versions", "show", "abc", "--store", store],
      ["versions", "show", "1", "--bogus", "--store", store],
      ["lock", "show", "--repository", "127.0.0.1:5000/x", "--store", store],
      ["state", "pull", "--compression", "zstd", "--store", store],
      ["state", "pull", "--lock-ttl", "-5", "--store", store],
      ["state", "pull", "--repository", "not a repository"]
    ]
    const results = await Promise.all(cases.map((args) => run(args)))
    results.forEach((result, i) => {
      expect({ args: cases[i], code: result.code }).toEqual({ args: cases[i], code: 2 })
      expect(result.stderr).not.toBe("")
    })
    expect(errorLine(results[4]!).tag).toBe("UsageError")
    expect(errorLine(results[6]!).message).toBe("--repository and --store exclude each other")
    expect(errorLine(results[8]!).tag).toBe("InvalidConfig")
    expect(errorLine(results[9]!).tag).toBe("InvalidConfig")

    // Global options before or after the command.
    const before = await run(["--json", "--store", store, "lock", "show"])
    const after = await run(["lock", "show", "--store", store, "--json"])
    expect(json(before)).toEqual({ workspace: "default", locked: false })
    expect(json(after)).toEqual({ workspace: "default", locked: false })
  }, 180_000)

  it("progress lines for transfers over 4 MiB with --progress, none without", async () => {
    const store = tempDir("progress")
    const files = tempDir("progressfiles")
    const big = {
      ...stateV1(),
      resources: [{
        mode: "managed",
        type: "null_resource",
        name: "big",
        provider: "provider[\"registry.terraform.io/hashicorp/null\"]",
        instances: Array.from({ length: 5000 }, (_, i) => ({ index_key: i, attributes: { id: String(i), blob: "x".repeat(1000) } }))
      }]
    }
    const file = writeJson(files, "big.json", big)
    expect(Fs.statSync(file).size).toBeGreaterThan(4 * 1024 * 1024)
    const pushed = await run(["state", "push", file, "--store", store, "--progress"])
    expect(pushed.code, pushed.stderr).toBe(0)
    expect(pushed.stderr).toMatch(/^upload: [\d.]+ MiB \/ [\d.]+ MiB \(100%\) /m)
    const pulled = await run(["state", "pull", "--store", store, "--progress"])
    expect(pulled.code, pulled.stderr).toBe(0)
    expect(pulled.stdoutBytes.equals(Fs.readFileSync(file))).toBe(true)
    expect(pulled.stderr).toMatch(/^download: [\d.]+ MiB \/ [\d.]+ MiB \(100%\) /m)
    const quiet = await run(["state", "pull", "--store", store, "-o", Path.join(files, "out.json")])
    expect(quiet.code, quiet.stderr).toBe(0)
    expect(quiet.stderr).toBe("")
  }, 180_000)

  it("doctor on the embedded store", async () => {
    const store = tempDir("doctor")
    const result = await run(["doctor", "--store", store, "--json"])
    expect(result.code, result.stderr).toBe(0)
    const report = json(result)
    const byId = Object.fromEntries(report.checks.map((c: { id: string; result: string }) => [c.id, c.result]))
    expect(byId).toEqual({
      "push-pull": "ok",
      "tag-list-consistency": "consistent",
      pagination: "n/a",
      "delete-tag": "supported",
      "delete-digest": "supported",
      cleanup: "done"
    })
    // Nothing of the probe is left in the index.
    const index = JSON.parse(Fs.readFileSync(Path.join(store, "default", "index.json"), "utf8")) as {
      manifests: Array<{ annotations?: Record<string, string> }>
    }
    expect(index.manifests).toEqual([])
  }, 180_000)
})
