/**
 * vitest globalSetup: one token server and three distribution 2.8 registries (plain, htpasswd,
 * token) for the whole run, shared by every test file through `inject("registries")`.
 * Runs in the vitest main process; test files run in forks and reach the servers over 127.0.0.1.
 */
import type { TestProject } from "vitest/node"
import { TEST_USERS } from "./fixtures.js"
import type { ProvidedRegistries } from "./provided.js"
import { startRegistry } from "./registryProcess.js"
import type { RegistryOptions, RunningRegistry } from "./registryProcess.js"
import { startTokenServer } from "./tokenServer.js"

/** Starts all registries in parallel; if any fails, stops the ones that did start and rethrows. */
async function startAll(optionsList: ReadonlyArray<RegistryOptions>): Promise<Array<RunningRegistry>> {
  const results = await Promise.allSettled(optionsList.map(startRegistry))
  const started = results.flatMap((r) => (r.status === "fulfilled" ? [r.value] : []))
  const failure = results.find((r): r is PromiseRejectedResult => r.status === "rejected")
  if (failure !== undefined) {
    await Promise.allSettled(started.map((r) => r.stop()))
    throw failure.reason
  }
  return started
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const tokenServer = await startTokenServer()
  let registries: Array<RunningRegistry>
  try {
    registries = await startAll([{ mode: "plain" }, { mode: "htpasswd" }, { mode: "token", tokenRealm: tokenServer.realm }])
  } catch (error) {
    await tokenServer.stop()
    throw error
  }
  const [plain, htpasswd, token] = registries as [RunningRegistry, RunningRegistry, RunningRegistry]

  const provided: ProvidedRegistries = {
    plain: { url: plain.url, host: plain.host },
    htpasswd: { url: htpasswd.url, host: htpasswd.host, ...TEST_USERS.writer },
    token: {
      url: token.url,
      host: token.host,
      ...TEST_USERS.writer,
      readerUsername: TEST_USERS.reader.username,
      readerPassword: TEST_USERS.reader.password,
      tokenServerUrl: tokenServer.url
    },
    tokenServerUrl: tokenServer.url
  }
  project.provide("registries", provided)

  return async () => {
    await Promise.allSettled(registries.map((r) => r.stop()))
    await tokenServer.stop()
  }
}
