/**
 * The request sequences stock Terraform and OpenTofu send to an `http` backend
 * (research/peers.md §2.7), replayed over real HTTP against a server in front of a backend.
 * Run against MemoryRegistry, the real registry and (when present) the OCI-layout store.
 */
import { expect, it } from "@effect/vitest"
import type { Layer } from "effect"
import type * as StateBackend from "../../src/StateBackend.js"
import { md5Base64, sleep, startServer, type TestServer, TfClient, tfStateJson } from "./support.js"

export interface SequenceSuiteOptions {
  /** A fresh backend (its own repository) per test, versioning on. */
  readonly backend: () => Layer.Layer<StateBackend.StateBackend, unknown>
}

export const sequenceSuite = (options: SequenceSuiteOptions) => {
  const withServer = async (body: (server: TestServer<StateBackend.StateBackend>) => Promise<void>) => {
    const server = await startServer(options.backend())
    try {
      await body(server)
    } finally {
      await server.close()
    }
  }

  const expectUnlocked = async (server: TestServer<StateBackend.StateBackend>, workspace = "default") => {
    const reply = await fetch(`${server.url}/state/${encodeURIComponent(workspace)}/lock`)
    expect(reply.status).toBe(204)
  }

  for (const dialect of ["terraform", "tofu"] as const) {
    it(`${dialect}: init, plan, apply with intermediate persists, plan again`, () =>
      withServer(async (server) => {
        // init: GET, no state yet.
        const init = new TfClient({ server: server.url, dialect })
        const first = await init.get()
        expect(first.status).toBe(204)
        expect(first.body.byteLength).toBe(0)

        // plan: GET → LOCK → GET → UNLOCK
        const plan = new TfClient({ server: server.url, dialect })
        expect((await plan.get()).status).toBe(204)
        expect((await plan.lock("OperationTypePlan")).status).toBe(200)
        expect((await plan.get()).status).toBe(204)
        const planUnlock = await plan.unlock()
        expect(planUnlock.status).toBe(200)
        await expectUnlocked(server)

        // apply: GET → LOCK → GET → POST?ID ×3 → UNLOCK
        const apply = new TfClient({ server: server.url, dialect })
        expect((await apply.get()).status).toBe(204)
        expect((await apply.lock("OperationTypeApply")).status).toBe(200)
        expect((await apply.get()).status).toBe(204)
        for (const serial of [1, 2, 3]) {
          const persisted = await apply.put(tfStateJson(serial))
          expect(persisted.status).toBe(200)
        }
        expect(apply.sent.filter((r) => r.method === "POST").every((r) => r.url.endsWith(`?ID=${apply.lockId}`))).toBe(true)
        expect((await apply.unlock()).status).toBe(200)
        await expectUnlocked(server)

        // The state as the next plan reads it: bytes, Content-Type, a valid Content-MD5.
        const next = new TfClient({ server: server.url, dialect })
        const read = await next.get()
        expect(read.status).toBe(200)
        expect(read.text).toBe(tfStateJson(3))
        expect(read.headers.get("content-type")).toBe("application/json")
        expect(read.headers.get("content-md5")).toBe(md5Base64(tfStateJson(3)))
        expect(read.headers.get("location")).toBeNull()

        const versions = await (await fetch(`${server.url}/state/default/versions`)).json() as Array<any>
        expect(versions.map((v) => v.version)).toEqual([1, 2, 3])
        expect(versions.map((v) => v.current)).toEqual([false, false, true])
      }))

    it(`${dialect}: state push takes the lock as "state-push"`, () =>
      withServer(async (server) => {
        const push = new TfClient({ server: server.url, dialect })
        expect((await push.get()).status).toBe(204)
        expect((await push.lock("state-push")).status).toBe(200)
        const held = await fetch(`${server.url}/state/default/lock`)
        expect(held.status).toBe(200)
        expect((await held.json()).Operation).toBe("state-push")
        expect((await push.get()).status).toBe(204)
        expect((await push.put(tfStateJson(7))).status).toBe(200)
        expect((await push.unlock()).status).toBe(200)
        expect((await new TfClient({ server: server.url }).get()).text).toBe(tfStateJson(7))
      }))

    it(`${dialect}: -lock-timeout waits on 423 with the holder's LockInfo, then locks`, () =>
      withServer(async (server) => {
        const a = new TfClient({ server: server.url, dialect, who: "alice@one" })
        const b = new TfClient({ server: server.url, dialect, who: "bob@two" })
        expect((await a.lock("OperationTypeApply")).status).toBe(200)
        const bId = crypto.randomUUID()
        const refused = await b.lock("OperationTypeApply", bId)
        expect(refused.status).toBe(423)
        expect(refused.headers.get("content-type")).toBe("application/json")
        const holder = refused.json()
        expect(holder.ID).toBe(a.lockId)
        expect(holder.ID).not.toBe("")
        expect(holder.Who).toBe("alice@one")
        expect(holder.Operation).toBe("OperationTypeApply")

        // A finishes while B polls (Terraform: 1, 2, 4 … s; shortened here).
        const finishA = (async () => {
          await sleep(150)
          expect((await a.put(tfStateJson(1))).status).toBe(200)
          expect((await a.unlock()).status).toBe(200)
        })()
        let status = 423
        for (let attempt = 0; attempt < 100 && status === 423; attempt++) {
          await sleep(25)
          const retry = await b.lock("OperationTypeApply", bId)
          status = retry.status
          if (status === 423) expect(retry.json().ID).toBe(a.lockId)
        }
        await finishA
        expect(status).toBe(200)
        expect(b.lockId).toBe(bId)
        expect((await b.get()).text).toBe(tfStateJson(1))
        expect((await b.unlock()).status).toBe(200)
      }))

    it(`${dialect}: force-unlock from another process`, () =>
      withServer(async (server) => {
        const stuck = new TfClient({ server: server.url, dialect, who: "ci@runner" })
        expect((await stuck.lock("OperationTypeApply")).status).toBe(200)
        const id = stuck.lockId!

        const operator = new TfClient({ server: server.url, dialect })
        expect((await operator.get()).status).toBe(204)
        const forced = await operator.forceUnlock(id)
        expect(forced.status).toBe(200)
        const sent = operator.sent.at(-1)!
        if (dialect === "terraform") {
          expect(sent.headers["content-md5"]).toBe("1B2M2Y8AsgTpgAmY7PhCfg==")
        }
        await expectUnlocked(server)
        expect(server.logs.some((line) => line.startsWith(`WARN force-unlock of workspace "default": removed lock ${id}`)))
          .toBe(true)

        // The stuck process's write is fenced; its own unlock of a lock no longer held is a 200.
        const late = await stuck.put(tfStateJson(9))
        expect(late.status).toBe(409)
        expect(late.json().tag).toBe("LockLost")
        expect((await stuck.unlock()).status).toBe(200)
        expect((await operator.get()).status).toBe(204)
      }))
  }

  it("tofu: force-unlock with a wrong ID is refused with the holder's LockInfo", () =>
    withServer(async (server) => {
      const holder = new TfClient({ server: server.url, dialect: "tofu", who: "carol@three" })
      expect((await holder.lock("OperationTypePlan")).status).toBe(200)
      const operator = new TfClient({ server: server.url, dialect: "tofu" })
      const refused = await operator.forceUnlock("00000000-0000-4000-8000-000000000000")
      expect(refused.status).toBe(409)
      expect(refused.json().ID).toBe(holder.lockId)
      expect(refused.json().Who).toBe("carol@three")
      const held = await fetch(`${server.url}/state/default/lock`)
      expect(held.status).toBe(200)
      expect((await operator.forceUnlock(holder.lockId!)).status).toBe(200)
      await expectUnlocked(server)
    }))

  it("a normal unlock with another client's ID is refused with the holder's LockInfo", () =>
    withServer(async (server) => {
      const a = new TfClient({ server: server.url, who: "alice@one" })
      expect((await a.lock("OperationTypeApply")).status).toBe(200)
      const b = new TfClient({ server: server.url, who: "bob@two" })
      b.lockBody = JSON.stringify({ ...JSON.parse(a.lockBody!), ID: crypto.randomUUID(), Who: "bob@two" })
      const refused = await b.unlock()
      expect(refused.status).toBe(409)
      expect(refused.json().ID).toBe(a.lockId)
      expect((await fetch(`${server.url}/state/default/lock`)).status).toBe(200)
      expect((await a.unlock()).status).toBe(200)
    }))

  it("-lock=false: writes without ID land while unlocked and are refused (409) while locked", () =>
    withServer(async (server) => {
      const unlockedWriter = new TfClient({ server: server.url })
      expect((await unlockedWriter.get()).status).toBe(204)
      expect((await unlockedWriter.put(tfStateJson(1))).status).toBe(200)

      const holder = new TfClient({ server: server.url })
      expect((await holder.lock("OperationTypeApply")).status).toBe(200)
      const refused = await unlockedWriter.put(tfStateJson(2))
      expect(refused.status).toBe(409)
      expect(refused.json().tag).toBe("Locked")
      expect(refused.json().lock.ID).toBe(holder.lockId)
      expect((await unlockedWriter.get()).text).toBe(tfStateJson(1))

      // A write with somebody else's ID is fenced too.
      const impostor = new TfClient({ server: server.url })
      impostor.lockId = crypto.randomUUID()
      expect((await impostor.put(tfStateJson(3))).status).toBe(409)

      expect((await holder.put(tfStateJson(2))).status).toBe(200)
      expect((await holder.unlock()).status).toBe(200)
      expect((await unlockedWriter.put(tfStateJson(3))).status).toBe(200)
    }))

  it("retried LOCK, POST and UNLOCK after lost responses are idempotent", () =>
    withServer(async (server) => {
      const a = new TfClient({ server: server.url })
      expect((await a.lock("OperationTypeApply")).status).toBe(200)
      // LOCK again with the same bytes (the first response was lost).
      expect((await a.lockWith(a.lockBody!)).status).toBe(200)
      expect((await a.put(tfStateJson(1))).status).toBe(200)
      const again = await a.put(tfStateJson(1))
      expect(again.status).toBe(200)
      expect(again.json().version).toBe(1)
      const versions = await (await fetch(`${server.url}/state/default/versions`)).json() as Array<unknown>
      expect(versions).toHaveLength(1)
      const lockBody = a.lockBody!
      expect((await a.unlock()).status).toBe(200)
      // UNLOCK retried after the lock was released…
      expect((await a.request("UNLOCK", a.lockAddress, lockBody)).status).toBe(200)
      // …and even after someone else took the lock meanwhile: 200, and B keeps its lock.
      const b = new TfClient({ server: server.url })
      expect((await b.lock("OperationTypePlan")).status).toBe(200)
      expect((await a.request("UNLOCK", a.lockAddress, lockBody)).status).toBe(200)
      const held = await fetch(`${server.url}/state/default/lock`)
      expect(held.status).toBe(200)
      expect((await held.json()).ID).toBe(b.lockId)
      expect((await b.unlock()).status).toBe(200)
    }))

  it("GitLab-style configs: POST lock, DELETE unlock, PUT updates; LOCK/UNLOCK at the state address", () =>
    withServer(async (server) => {
      const gitlab = new TfClient({ server: server.url, workspace: "gitlab", methods: "post", updateMethod: "PUT" })
      expect((await gitlab.lock("OperationTypeApply")).status).toBe(200)
      const other = new TfClient({ server: server.url, workspace: "gitlab", methods: "post" })
      const refused = await other.lock("OperationTypeApply")
      expect(refused.status).toBe(423)
      expect(refused.json().ID).toBe(gitlab.lockId)
      expect((await gitlab.put(tfStateJson(1))).status).toBe(200)
      expect((await gitlab.unlock()).status).toBe(200)
      await expectUnlocked(server, "gitlab")

      const sameAddress = new TfClient({ server: server.url, workspace: "same", lockAtAddress: true })
      expect((await sameAddress.lock("OperationTypeApply")).status).toBe(200)
      expect((await sameAddress.put(tfStateJson(1))).status).toBe(200)
      expect((await sameAddress.unlock()).status).toBe(200)
      await expectUnlocked(server, "same")
    }))

  it("workspaces by path, %2F-encoded names, versions and restore, DELETE", () =>
    withServer(async (server) => {
      const prod = new TfClient({ server: server.url, workspace: "team/prod" })
      expect(prod.address.endsWith("/state/team%2Fprod")).toBe(true)
      expect((await prod.put(tfStateJson(1))).status).toBe(200)
      expect((await prod.put(tfStateJson(2))).status).toBe(200)
      expect((await new TfClient({ server: server.url }).get()).status).toBe(204)
      expect((await prod.get()).text).toBe(tfStateJson(2))

      const names = await (await fetch(`${server.url}/state`)).json()
      expect(names).toEqual(expect.arrayContaining(["default", "team/prod"]))

      const list = await (await fetch(`${prod.address}/versions`)).json() as Array<any>
      expect(list.map((v) => [v.version, v.current])).toEqual([[1, false], [2, true]])
      expect(list[0].digest).toMatch(/^sha256:/)
      const v1 = await fetch(`${prod.address}/versions/1`)
      expect(v1.status).toBe(200)
      expect(await v1.text()).toBe(tfStateJson(1))
      expect(v1.headers.get("content-md5")).toBe(md5Base64(tfStateJson(1)))
      expect((await fetch(`${prod.address}/versions/9`)).status).toBe(404)
      expect((await fetch(`${prod.address}/versions/x`)).status).toBe(400)

      // Restore is a write: refused without ID while locked, fenced with one.
      expect((await prod.lock("OperationTypeApply")).status).toBe(200)
      expect((await fetch(`${prod.address}/versions/1/restore`, { method: "POST" })).status).toBe(409)
      const restored = await fetch(`${prod.address}/versions/1/restore?ID=${prod.lockId}`, { method: "POST" })
      expect(restored.status).toBe(200)
      expect(await restored.json()).toMatchObject({ version: 3, restoredFrom: 1 })
      expect((await prod.unlock()).status).toBe(200)
      expect((await prod.get()).text).toBe(tfStateJson(1))

      // DELETE: `default` refused, a locked workspace refused with its holder, else deleted.
      expect((await fetch(`${server.url}/state/default`, { method: "DELETE" })).status).toBe(403)
      expect((await prod.lock("OperationTypeApply")).status).toBe(200)
      const lockedDelete = await fetch(prod.address, { method: "DELETE" })
      expect(lockedDelete.status).toBe(423)
      expect((await lockedDelete.json()).ID).toBe(prod.lockId)
      expect((await prod.unlock()).status).toBe(200)
      expect((await fetch(prod.address, { method: "DELETE" })).status).toBe(200)
      expect((await prod.get()).status).toBe(204)
      expect(await (await fetch(`${server.url}/state`)).json()).not.toContain("team/prod")
    }))
}
