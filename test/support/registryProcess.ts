/**
 * Start and stop a real CNCF distribution 2.8 registry (Debian's `docker-registry`) on 127.0.0.1.
 *
 * Each registry gets its own temp dir (config.yml + data/), a free loopback port and, depending on
 * `mode`, htpasswd or token auth wired to the committed fixtures in `test/fixtures/`.
 * Children are killed when the Node process exits (an 'exit' handler) and, on Linux, also if it
 * dies without running handlers (`setpriv --pdeathsig KILL`).
 */
import { spawn } from "node:child_process"
import type { ChildProcess } from "node:child_process"
import { existsSync, readFileSync, rmSync } from "node:fs"
import { mkdtemp, rm, writeFile } from "node:fs/promises"
import { request as httpRequest } from "node:http"
import { request as httpsRequest } from "node:https"
import { createServer } from "node:net"
import type { AddressInfo } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { HTPASSWD_REALM, TOKEN_ISSUER, TOKEN_SERVICE, fixturePath } from "./fixtures.js"

export type RegistryMode = "plain" | "htpasswd" | "token"

export interface RegistryOptions {
  readonly mode: RegistryMode
  /** `storage.delete.enabled`; default true (without it DELETE answers 405 UNSUPPORTED). */
  readonly deleteEnabled?: boolean
  /** `http.relativeurls`: Location headers become relative; default false. */
  readonly relativeUrls?: boolean
  /** Serve HTTPS with `test/fixtures/tls-server.{crt,key}` (trust `tls-ca.crt`); default false. */
  readonly tls?: boolean
  /** Token mode only (required there): the token server's realm URL, e.g. `http://127.0.0.1:PORT/token`. */
  readonly tokenRealm?: string
}

export interface RunningRegistry {
  readonly mode: RegistryMode
  /** `127.0.0.1:PORT` */
  readonly host: string
  /** `http://127.0.0.1:PORT` or `https://127.0.0.1:PORT` */
  readonly url: string
  readonly dataDir: string
  /** Captured stdout+stderr of the registry (last 64 KiB), for diagnostics. */
  output(): string
  stop(): Promise<void>
}

const REGISTRY_BIN = process.env["DOCKER_REGISTRY_BIN"] ?? "/usr/bin/docker-registry"
const SETPRIV_BIN = "/usr/bin/setpriv"
/** Fixed so that upload `_state` tokens stay valid across a restart of the same config. */
const HTTP_SECRET = "oras-state-test-http-secret"
const READY_TIMEOUT_MS = 15_000
const STOP_GRACE_MS = 3_000
const MAX_START_ATTEMPTS = 5
const MAX_OUTPUT_CHARS = 64 * 1024

// ---------------------------------------------------------------------------------------------
// Leak protection: every live child and its temp dir, killed/removed synchronously on exit.
// ---------------------------------------------------------------------------------------------

const liveChildren = new Map<ChildProcess, string>()
let exitHandlerInstalled = false

function killAllOnExit(): void {
  for (const [child, dir] of liveChildren) {
    child.kill("SIGKILL")
    rmSync(dir, { recursive: true, force: true })
  }
  liveChildren.clear()
}

function track(child: ChildProcess, dir: string): void {
  if (!exitHandlerInstalled) {
    // Prepended: vitest's own 'exit' listener calls process.exit() again on SIGINT/SIGTERM, which
    // skips every listener registered after it.
    process.prependListener("exit", killAllOnExit)
    exitHandlerInstalled = true
  }
  liveChildren.set(child, dir)
}

// ---------------------------------------------------------------------------------------------
// Config
// ---------------------------------------------------------------------------------------------

/** A YAML double-quoted scalar; JSON string syntax is a subset of it. */
const q = (value: string): string => JSON.stringify(value)

function authLines(options: RegistryOptions): Array<string> {
  switch (options.mode) {
    case "plain":
      return []
    case "htpasswd":
      return ["auth:", "  htpasswd:", `    realm: ${q(HTPASSWD_REALM)}`, `    path: ${q(fixturePath("htpasswd"))}`]
    case "token":
      if (options.tokenRealm === undefined) throw new Error("startRegistry: mode 'token' requires tokenRealm")
      return [
        "auth:",
        "  token:",
        `    realm: ${q(options.tokenRealm)}`,
        `    service: ${q(TOKEN_SERVICE)}`,
        `    issuer: ${q(TOKEN_ISSUER)}`,
        `    rootcertbundle: ${q(fixturePath("token-signing.crt"))}`
      ]
  }
}

function tlsLines(options: RegistryOptions): Array<string> {
  if (options.tls !== true) return []
  return ["  tls:", `    certificate: ${q(fixturePath("tls-server.crt"))}`, `    key: ${q(fixturePath("tls-server.key"))}`]
}

export function renderConfig(options: RegistryOptions, port: number, dataDir: string): string {
  return [
    "version: 0.1",
    "log:",
    "  level: warn",
    "  accesslog:",
    "    disabled: true",
    "storage:",
    "  filesystem:",
    `    rootdirectory: ${q(dataDir)}`,
    "  delete:",
    `    enabled: ${options.deleteEnabled ?? true}`,
    "  maintenance:",
    "    uploadpurging:",
    "      enabled: false",
    "http:",
    `  addr: 127.0.0.1:${port}`,
    `  secret: ${q(HTTP_SECRET)}`,
    `  relativeurls: ${options.relativeUrls ?? false}`,
    ...tlsLines(options),
    ...authLines(options),
    ""
  ].join("\n")
}

// ---------------------------------------------------------------------------------------------
// Process plumbing
// ---------------------------------------------------------------------------------------------

/** Bind port 0 on loopback, read the port, release it. Racy by nature; callers retry on EADDRINUSE. */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as AddressInfo
      server.close(() => resolve(port))
    })
  })
}

function spawnRegistry(configPath: string): ChildProcess {
  const args = ["serve", configPath]
  // setpriv makes the kernel SIGKILL the registry if this process dies without running 'exit' handlers.
  const usePdeathsig = process.platform === "linux" && existsSync(SETPRIV_BIN)
  return usePdeathsig
    ? spawn(SETPRIV_BIN, ["--pdeathsig", "KILL", REGISTRY_BIN, ...args], { stdio: ["ignore", "pipe", "pipe"] })
    : spawn(REGISTRY_BIN, args, { stdio: ["ignore", "pipe", "pipe"] })
}

/** Keeps the tail of stdout+stderr; also drains the pipes so the child never blocks on them. */
function captureOutput(child: ChildProcess): () => string {
  let text = ""
  const append = (chunk: Buffer): void => {
    text = (text + chunk.toString("utf8")).slice(-MAX_OUTPUT_CHARS)
  }
  child.stdout?.on("data", append)
  child.stderr?.on("data", append)
  child.on("error", (error) => append(Buffer.from(`\n[spawn error] ${String(error)}\n`)))
  return () => text
}

const hasExited = (child: ChildProcess): boolean => child.exitCode !== null || child.signalCode !== null

function waitForExit(child: ChildProcess): Promise<void> {
  if (hasExited(child)) return Promise.resolve()
  return new Promise((resolve) => child.once("exit", () => resolve()))
}

async function terminate(child: ChildProcess): Promise<void> {
  // No pid: the spawn itself failed, there is nothing to kill and no 'exit' to wait for.
  if (child.pid === undefined || hasExited(child)) return
  const exited = waitForExit(child)
  child.kill("SIGTERM")
  const timer = setTimeout(() => child.kill("SIGKILL"), STOP_GRACE_MS)
  await exited
  clearTimeout(timer)
}

/**
 * Status of `GET /v2/` if a distribution registry answered it, else undefined. The API-version
 * header guards against a foreign server that grabbed the port between freePort() and spawn.
 */
function probeV2(baseUrl: string, tls: boolean): Promise<number | undefined> {
  return new Promise((resolve) => {
    const options = { timeout: 1_000, ...(tls ? { ca: readFileSync(fixturePath("tls-ca.crt")) } : {}) }
    const req = (tls ? httpsRequest : httpRequest)(`${baseUrl}/v2/`, options, (res) => {
      res.resume()
      const isRegistry = res.headers["docker-distribution-api-version"] === "registry/2.0"
      resolve(isRegistry ? res.statusCode : undefined)
    })
    req.on("timeout", () => req.destroy())
    req.on("error", () => resolve(undefined))
    req.end()
  })
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

type Readiness = "ready" | "exited" | "timeout"

async function waitUntilReady(child: ChildProcess, baseUrl: string, tls: boolean): Promise<Readiness> {
  const deadline = Date.now() + READY_TIMEOUT_MS
  while (Date.now() < deadline) {
    if (hasExited(child)) return "exited"
    const status = await probeV2(baseUrl, tls)
    if (status === 200 || status === 401) return hasExited(child) ? "exited" : "ready"
    await sleep(100)
  }
  return "timeout"
}

// ---------------------------------------------------------------------------------------------
// Public API
// ---------------------------------------------------------------------------------------------

type Attempt = { readonly ok: true; readonly registry: RunningRegistry } | { readonly ok: false; readonly output: string }

async function attemptStart(options: RegistryOptions, dir: string, dataDir: string): Promise<Attempt> {
  const port = await freePort()
  const configPath = join(dir, "config.yml")
  const config = renderConfig(options, port, dataDir)
  await writeFile(configPath, config)
  const child = spawnRegistry(configPath)
  track(child, dir)
  const output = captureOutput(child)
  const spawnFailed = new Promise<Readiness>((resolve) => child.once("error", () => resolve("exited")))
  const host = `127.0.0.1:${port}`
  const url = `${options.tls === true ? "https" : "http"}://${host}`
  const readiness = await Promise.race([waitUntilReady(child, url, options.tls === true), spawnFailed])
  if (readiness !== "ready") {
    await terminate(child)
    liveChildren.delete(child)
    if (readiness === "exited" && /address already in use/i.test(output())) return { ok: false, output: output() }
    throw new Error(
      `docker-registry (${options.mode}) did not become ready on ${url} (${readiness}, exit ${String(child.exitCode ?? child.signalCode)}).\n` +
        `--- config.yml ---\n${config}--- registry output ---\n${output()}`
    )
  }
  const stop = async (): Promise<void> => {
    await terminate(child)
    liveChildren.delete(child)
    await rm(dir, { recursive: true, force: true })
  }
  return { ok: true, registry: { mode: options.mode, host, url, dataDir, output, stop } }
}

/**
 * Registry storage goes to tmpfs when there is one: the tests are about protocol, not disk
 * durability, and distribution's filesystem driver is slow on real disks (one registry write is
 * several small file writes).
 */
function registryTmpRoot(): string {
  const override = process.env["ORAS_STATE_TEST_TMPDIR"]
  if (override !== undefined && override !== "") return override
  return existsSync("/dev/shm") ? "/dev/shm" : tmpdir()
}

function assertRegistryInstalled(): void {
  if (!existsSync(REGISTRY_BIN)) {
    throw new Error(
      `${REGISTRY_BIN} not found: the integration tests need CNCF distribution 2.8. ` +
        "Run `apt-get install -y docker-registry` (Debian/Ubuntu), or set DOCKER_REGISTRY_BIN."
    )
  }
}

export async function startRegistry(options: RegistryOptions): Promise<RunningRegistry> {
  assertRegistryInstalled()
  const dir = await mkdtemp(join(registryTmpRoot(), `oras-state-registry-${options.mode}-`))
  const dataDir = join(dir, "data")
  try {
    let lastOutput = ""
    for (let attempt = 1; attempt <= MAX_START_ATTEMPTS; attempt++) {
      const result = await attemptStart(options, dir, dataDir)
      if (result.ok) return result.registry
      lastOutput = result.output
    }
    throw new Error(`docker-registry could not bind a free port after ${MAX_START_ATTEMPTS} attempts:\n${lastOutput}`)
  } catch (error) {
    await rm(dir, { recursive: true, force: true })
    throw error
  }
}
