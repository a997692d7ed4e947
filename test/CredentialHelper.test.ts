import { describe, expect, it } from "@effect/vitest"
import { Clock, Duration, Effect, Fiber, Option, Redacted, TestClock } from "effect"
import * as Fs from "node:fs"
import * as Path from "node:path"
import * as CredentialHelper from "../src/CredentialHelper.js"
import { answering, assertNoSecrets, recordCall, tempDir, type TempDir } from "./support/credentialFixtures.js"

const helpers = (dir: TempDir, options: CredentialHelper.Options = {}) =>
  CredentialHelper.layerNode({ path: dir.path, ...options })

const lookup = (helper: string, serverUrl: string) =>
  Effect.flatMap(CredentialHelper.CredentialHelpers, (h) => h.get(helper, serverUrl))

const processAlive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

describe("CredentialHelper (real docker-credential-* programs)", () => {
  it.scoped("success: Basic from Username/Secret, server URL on stdin without newline", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      dir.helper("ok", `${recordCall(dir, "ok")}\n${answering({ "reg.example": { username: "alice", secret: "pw-1" } })}`)
      const found = yield* lookup("ok", "reg.example").pipe(Effect.provide(helpers(dir)))
      const credential = Option.getOrThrow(found)
      expect(credential._tag).toBe("Basic")
      if (credential._tag !== "Basic") return
      expect(credential.username).toBe("alice")
      expect(Redacted.value(credential.password)).toBe("pw-1")
      expect(dir.calls("ok")).toEqual(["reg.example"])
    }))

  it.scoped("Username <token> means an identity token (RefreshToken)", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      dir.helper("tok", `${recordCall(dir, "tok")}\n${answering({ "reg.example": { username: "<token>", secret: "idt" } })}`)
      const credential = Option.getOrThrow(yield* lookup("tok", "reg.example").pipe(Effect.provide(helpers(dir))))
      expect(credential._tag).toBe("RefreshToken")
      if (credential._tag === "RefreshToken") expect(Redacted.value(credential.token)).toBe("idt")
    }))

  it.scoped("not found (exit 1, the keychain message) is None", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      dir.helper("ok", `${recordCall(dir, "ok")}\n${answering({})}`)
      expect(yield* lookup("ok", "other.example").pipe(Effect.provide(helpers(dir)))).toEqual(Option.none())
    }))

  it.scoped("crash (exit 2 with garbage) is a CredentialsError that shows none of the output", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      dir.helper("crash", `cat >/dev/null\nprintf '{"Username":"bob","Secret":"leaky-secret-1'\necho 'stack: leaky-secret-2' >&2\nexit 2`)
      const error = yield* Effect.flip(lookup("crash", "reg.example").pipe(Effect.provide(helpers(dir))))
      expect(error._tag).toBe("CredentialsError")
      expect(error.source).toBe("docker-credential-crash")
      expect(error.message).toContain("exited with code 2")
      assertNoSecrets(error, ["leaky-secret-1", "leaky-secret-2"])
    }))

  it.scoped("exit 1 with another message is an error, not 'not found'", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      dir.helper("broken", `cat >/dev/null\nprintf 'error getting credentials - keychain locked'\nexit 1`)
      const error = yield* Effect.flip(lookup("broken", "reg.example").pipe(Effect.provide(helpers(dir))))
      expect(error.message).toContain("exited with code 1")
    }))

  it.scoped("garbage JSON on exit 0 is a CredentialsError", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      dir.helper("garbage", `cat >/dev/null\nprintf 'Secret=hunter2-garbage {{{'`)
      dir.helper("wrongtype", `cat >/dev/null\nprintf '{"Username":"u","Secret":12345678}'`)
      dir.helper("array", `cat >/dev/null\nprintf '["hunter2-array"]'`)
      const layer = helpers(dir)
      const garbage = yield* Effect.flip(lookup("garbage", "reg.example").pipe(Effect.provide(layer)))
      expect(garbage.message).toContain("not JSON")
      const wrongType = yield* Effect.flip(lookup("wrongtype", "reg.example").pipe(Effect.provide(layer)))
      expect(wrongType.message).toContain("Username and Secret")
      const array = yield* Effect.flip(lookup("array", "reg.example").pipe(Effect.provide(layer)))
      expect(array.message).toContain("not an object")
      for (const e of [garbage, wrongType, array]) assertNoSecrets(e, ["hunter2", "12345678"])
    }))

  it.scoped("a missing program and a path-like name are CredentialsErrors", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const layer = helpers(dir)
      const missing = yield* Effect.flip(lookup("does-not-exist", "reg.example").pipe(Effect.provide(layer)))
      expect(missing.message).toContain("not on PATH")
      const pathLike = yield* Effect.flip(lookup("../../bin/sh", "reg.example").pipe(Effect.provide(layer)))
      expect(pathLike.message).toContain("plain name")
    }))

  it.scopedLive("hang: killed after the timeout (even when it ignores SIGTERM)", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const pidFile = Path.join(dir.dir, "pid")
      dir.helper("hang", `echo $$ > '${pidFile}'\ntrap '' TERM\nwhile :; do sleep 1; done`)
      const started = Date.now()
      const error = yield* Effect.flip(
        lookup("hang", "reg.example").pipe(Effect.provide(helpers(dir, { timeout: Duration.millis(500) })))
      )
      expect(Date.now() - started).toBeLessThan(5_000)
      expect(error.message).toContain("did not answer within")
      const pid = Number(Fs.readFileSync(pidFile, "utf8").trim())
      expect(processAlive(pid)).toBe(false)
    }))

  it.scoped("caching: one run for N sequential lookups, until the success TTL passes (TestClock)", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      dir.helper("count", `${recordCall(dir, "count")}\n${answering({ "reg.example": { username: "u", secret: "s" } })}`)
      yield* Effect.gen(function*() {
        for (let i = 0; i < 5; i++) expect(Option.isSome(yield* lookup("count", "reg.example"))).toBe(true)
        expect(dir.calls("count")).toHaveLength(1)
        // another server URL is another entry
        expect(yield* lookup("count", "other.example")).toEqual(Option.none())
        expect(yield* lookup("count", "other.example")).toEqual(Option.none())
        expect(dir.calls("count")).toHaveLength(2)
        yield* TestClock.adjust("4 minutes")
        yield* lookup("count", "reg.example")
        expect(dir.calls("count")).toHaveLength(2)
        yield* TestClock.adjust("2 minutes")
        yield* lookup("count", "reg.example")
        expect(dir.calls("count")).toHaveLength(3)
      }).pipe(Effect.provide(helpers(dir)))
    }))

  it.scoped("caching: concurrent lookups for one host share one process", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      dir.helper(
        "slow",
        `${recordCall(dir, "slow")}\nsleep 0.3\n${answering({ "reg.example": { username: "u", secret: "s" } })}`
      )
      const results = yield* Effect.all(Array.from({ length: 10 }, () => lookup("slow", "reg.example")), {
        concurrency: "unbounded"
      }).pipe(Effect.provide(helpers(dir)))
      expect(results.every(Option.isSome)).toBe(true)
      expect(dir.calls("slow")).toHaveLength(1)
    }))

  it.scoped("caching: a caller interrupted while waiting does not cancel the run the others share", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      dir.helper(
        "slow",
        `${recordCall(dir, "slow")}\nsleep 0.3\n${answering({ "reg.example": { username: "u", secret: "s" } })}`
      )
      yield* Effect.gen(function*() {
        const first = yield* Effect.fork(lookup("slow", "reg.example"))
        yield* Effect.sleep("50 millis").pipe(Effect.withClock(Clock.make()))
        const second = yield* Effect.fork(lookup("slow", "reg.example"))
        yield* Fiber.interrupt(first)
        expect(Option.isSome(yield* Fiber.join(second))).toBe(true)
        expect(dir.calls("slow")).toHaveLength(1)
      }).pipe(Effect.provide(helpers(dir)))
    }))

  it.scoped("caching: errors are kept only for the short error TTL (TestClock)", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      dir.helper("flaky", `${recordCall(dir, "flaky")}\nexit 2`)
      yield* Effect.gen(function*() {
        yield* Effect.flip(lookup("flaky", "reg.example"))
        yield* Effect.flip(lookup("flaky", "reg.example"))
        expect(dir.calls("flaky")).toHaveLength(1)
        yield* TestClock.adjust("9 seconds")
        yield* Effect.flip(lookup("flaky", "reg.example"))
        expect(dir.calls("flaky")).toHaveLength(1)
        yield* TestClock.adjust("2 seconds")
        // the helper was fixed in the meantime
        dir.helper("flaky", `${recordCall(dir, "flaky")}\n${answering({ "reg.example": { username: "u", secret: "s" } })}`)
        expect(Option.isSome(yield* lookup("flaky", "reg.example"))).toBe(true)
        expect(dir.calls("flaky")).toHaveLength(2)
      }).pipe(Effect.provide(helpers(dir)))
    }))
})
