/**
 * Running the built `oras-state` binary as a subprocess, in a clean environment: no
 * `TF_BACKEND_ORAS_*`, no ambient docker/podman credentials (HOME is a fresh temp dir), short
 * retry waits. Plus Terraform-like state documents and a lock taken through the library.
 */
import { Effect, Layer } from "effect"
import { expect } from "vitest"
import { spawn, spawnSync } from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"
import * as Credentials from "../../src/Credentials.js"
import * as HttpRegistry from "../../src/HttpRegistry.js"
import * as LockInfo from "../../src/LockInfo.js"
import * as OciLayoutRegistry from "../../src/OciLayoutRegistry.js"
import * as RateLimiter from "../../src/RateLimiter.js"
import * as StateBackend from "../../src/StateBackend.js"

export const root = fileURLToPath(new URL("../../", import.meta.url))
const builtBin = Path.join(root, "dist/bin/oras-state.js")

/**
 * The binary the tests run: a private copy of `dist/` (with `package.json` and a `node_modules`
 * link beside it), so that another test run rebuilding `dist/` in this checkout cannot swap
 * modules under a running subprocess. Set by `ensureBuilt`.
 */
export let bin = builtBin

const newestMtime = (dir: string): number =>
  Fs.readdirSync(dir, { withFileTypes: true }).reduce((max, entry) => {
    const full = Path.join(dir, entry.name)
    return Math.max(max, entry.isDirectory() ? newestMtime(full) : Fs.statSync(full).mtimeMs)
  }, 0)

/**
 * Build `dist/` unless the global setup already did (the binary is newer than every source file).
 */
export const ensureBuilt = (): void => {
  const built = Fs.existsSync(builtBin) ? Fs.statSync(builtBin).mtimeMs : 0
  if (built < newestMtime(Path.join(root, "src"))) {
    const result = spawnSync(process.execPath, [Path.join(root, "node_modules/typescript/bin/tsc"), "-p", "tsconfig.build.json"], {
      cwd: root,
      encoding: "utf8"
    })
    if (!Fs.existsSync(builtBin)) throw new Error(`build failed:\n${result.stdout}\n${result.stderr}`)
  }
  const snapshot = tempDir("dist")
  Fs.cpSync(Path.join(root, "dist"), Path.join(snapshot, "dist"), { recursive: true, filter: (f) => !f.endsWith(".map") })
  Fs.copyFileSync(Path.join(root, "package.json"), Path.join(snapshot, "package.json"))
  Fs.symlinkSync(Path.join(root, "node_modules"), Path.join(snapshot, "node_modules"), "dir")
  bin = Path.join(snapshot, "dist/bin/oras-state.js")
}

const created: Array<string> = []

export const tempDir = (prefix: string): string => {
  const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), `oras-state-cli-${prefix}-`))
  created.push(dir)
  return dir
}

/** Remove the temporary directories (and the binary's snapshot) of this test file. */
export const cleanup = (): void => {
  for (const dir of created.splice(0)) Fs.rmSync(dir, { recursive: true, force: true })
}

const home = tempDir("home")

/** The environment every run starts from. */
export const baseEnv = (): Record<string, string> => {
  const env: Record<string, string> = {}
  for (const [key, value] of Object.entries(process.env)) {
    if (value === undefined) continue
    if (key.startsWith("TF_BACKEND_ORAS_") || key.startsWith("DOCKER_") || key.startsWith("XDG_")) continue
    if (key === "REGISTRY_AUTH_FILE" || key === "TF_WORKSPACE" || key === "NODE_OPTIONS") continue
    env[key] = value
  }
  return {
    ...env,
    HOME: home,
    TF_BACKEND_ORAS_RETRY_WAIT_MIN: "0.05",
    TF_BACKEND_ORAS_RETRY_WAIT_MAX: "0.2",
    TF_BACKEND_ORAS_VERSIONING_ENABLED: "true"
  }
}

export interface RunResult {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
  readonly stdout: string
  readonly stdoutBytes: Buffer
  readonly stderr: string
}

export interface RunOptions {
  readonly env?: Record<string, string | undefined>
  readonly cwd?: string
  readonly input?: string | Uint8Array
  readonly timeoutMs?: number
}

/** Run `oras-state args…` to completion. */
export const run = (args: ReadonlyArray<string>, options: RunOptions = {}): Promise<RunResult> =>
  new Promise((resolve, reject) => {
    const env = { ...baseEnv(), ...options.env }
    for (const [k, v] of Object.entries(env)) if (v === undefined) delete env[k]
    const child = spawn(process.execPath, [bin, ...args], {
      cwd: options.cwd ?? root,
      env: env as NodeJS.ProcessEnv,
      stdio: ["pipe", "pipe", "pipe"]
    })
    const out: Array<Buffer> = []
    const err: Array<Buffer> = []
    child.stdout.on("data", (b: Buffer) => out.push(b))
    child.stderr.on("data", (b: Buffer) => err.push(b))
    const timer = setTimeout(() => {
      child.kill("SIGKILL")
      reject(new Error(`oras-state ${args.join(" ")} timed out; stderr: ${Buffer.concat(err).toString()}`))
    }, options.timeoutMs ?? 45_000)
    child.on("error", reject)
    child.on("close", (code, signal) => {
      clearTimeout(timer)
      const stdoutBytes = Buffer.concat(out)
      resolve({ code, signal, stdout: stdoutBytes.toString("utf8"), stdoutBytes, stderr: Buffer.concat(err).toString("utf8") })
    })
    child.stdin.end(options.input ?? "")
  })

/** Assert the exit code, showing stderr when it differs. */
export const expectExit = (result: RunResult, code: number): void => {
  expect(result.code, `exit ${result.code}; stderr: ${result.stderr}`).toBe(code)
}

/** Parse stdout as one JSON document, with the run in the message when it is not. */
export const json = (result: RunResult): any => {
  try {
    return JSON.parse(result.stdout)
  } catch {
    throw new Error(`stdout is not one JSON document (exit ${result.code}):\n${result.stdout}\nstderr: ${result.stderr}`)
  }
}

/** Every stderr line of a failure: exactly one line, `oras-state: <Tag>: <message>`. */
export const errorLine = (result: RunResult): { readonly tag: string; readonly message: string } => {
  const lines = result.stderr.split("\n").filter((l) => l !== "")
  if (lines.length !== 1) throw new Error(`expected one stderr line, got:\n${result.stderr}`)
  const match = /^oras-state: ([A-Za-z]+): (.*)$/.exec(lines[0]!)
  if (match === null) throw new Error(`unexpected stderr line: ${lines[0]}`)
  return { tag: match[1]!, message: match[2]! }
}

// ---------------------------------------------------------------------------------------------
// Terraform-like states
// ---------------------------------------------------------------------------------------------

const aws = "provider[\"registry.terraform.io/hashicorp/aws\"]"

/** Serial 1: two web instances, a module data source, outputs ip and a sensitive password. */
export const stateV1 = (lineage = "6f0c3a52-lineage-one") => ({
  version: 4,
  terraform_version: "1.9.5",
  serial: 1,
  lineage,
  outputs: {
    ip: { value: "10.0.0.1", type: "string" },
    db_password: { value: "hunter2", type: "string", sensitive: true },
    removed_later: { value: 42, type: "number" }
  },
  resources: [
    {
      mode: "managed",
      type: "aws_instance",
      name: "web",
      provider: aws,
      instances: [
        { index_key: 0, schema_version: 1, attributes: { id: "i-0001", ami: "ami-111", tags: { Name: "web-0" } }, sensitive_attributes: [] },
        { index_key: 1, schema_version: 1, attributes: { id: "i-0002", ami: "ami-111", tags: { Name: "web-1" } }, sensitive_attributes: [] }
      ]
    },
    {
      module: "module.network",
      mode: "data",
      type: "aws_vpc",
      name: "main",
      provider: aws,
      instances: [{ schema_version: 0, attributes: { id: "vpc-1", cidr_block: "10.0.0.0/16" } }]
    },
    {
      module: "module.network",
      mode: "managed",
      type: "aws_subnet",
      name: "private",
      provider: aws,
      instances: [{ index_key: "a", schema_version: 1, attributes: { id: "subnet-a", cidr_block: "10.0.1.0/24" } }]
    }
  ],
  check_results: null
})

/**
 * Serial 2 (same lineage): web[1] destroyed, web[0] got a new AMI and tags, the data source gone,
 * a bucket for_each key "logs" added, subnet unchanged; outputs: ip changed, the sensitive one
 * changed, `removed_later` removed, `bucket` added.
 */
export const stateV2 = (lineage = "6f0c3a52-lineage-one") => ({
  version: 4,
  terraform_version: "1.9.5",
  serial: 2,
  lineage,
  outputs: {
    ip: { value: "10.0.0.2", type: "string" },
    db_password: { value: "hunter3", type: "string", sensitive: true },
    bucket: { value: { name: "logs-bucket", arn: "arn:aws:s3:::logs-bucket" }, type: ["object", { name: "string", arn: "string" }] }
  },
  resources: [
    {
      mode: "managed",
      type: "aws_instance",
      name: "web",
      provider: aws,
      instances: [
        { index_key: 0, schema_version: 1, attributes: { id: "i-0001", ami: "ami-222", tags: { Name: "web-0", Env: "prod" } }, sensitive_attributes: [] }
      ]
    },
    {
      module: "module.network",
      mode: "managed",
      type: "aws_subnet",
      name: "private",
      provider: aws,
      instances: [{ index_key: "a", schema_version: 1, attributes: { id: "subnet-a", cidr_block: "10.0.1.0/24" } }]
    },
    {
      mode: "managed",
      type: "aws_s3_bucket",
      name: "this",
      provider: aws,
      instances: [{ index_key: "logs", schema_version: 0, attributes: { id: "logs-bucket", bucket: "logs-bucket" } }]
    }
  ],
  check_results: null
})

export const text = (value: unknown): string => `${JSON.stringify(value, null, 2)}\n`

export const writeJson = (dir: string, name: string, value: unknown): string => {
  const file = Path.join(dir, name)
  Fs.writeFileSync(file, typeof value === "string" ? value : text(value))
  return file
}

// ---------------------------------------------------------------------------------------------
// Locks taken through the library
// ---------------------------------------------------------------------------------------------

export const holderInfo = LockInfo.make({
  Operation: "OperationTypeApply",
  Who: "alice@ci-runner-7",
  Version: "1.9.5",
  Created: "2025-01-02T03:04:05.123456Z",
  Info: "apply from pipeline 42"
})

const takeLock = (layer: Layer.Layer<StateBackend.StateBackend, unknown>, workspace: string): Promise<string> =>
  Effect.runPromise(
    Effect.gen(function*() {
      const backend = yield* StateBackend.StateBackend
      const manager = yield* backend.stateManager(workspace)
      return yield* manager.lock(holderInfo)
    }).pipe(Effect.provide(layer), Effect.scoped)
  )

/** Lock `workspace` of the embedded store in `dir` (with a lease when `ttlSeconds`); returns the lock ID. */
export const lockEmbedded = (dir: string, workspace = "default", ttlSeconds?: number): Promise<string> =>
  takeLock(
    StateBackend.layer({ repository: "default", lockTtl: ttlSeconds === undefined ? undefined : `${ttlSeconds} seconds` })
      .pipe(Layer.provide(OciLayoutRegistry.layer(dir))),
    workspace
  )

/** Lock `workspace` of `repository` on the plain registry at `host`; returns the lock ID. */
export const lockOnRegistry = (host: string, repository: string, workspace = "default"): Promise<string> =>
  takeLock(
    StateBackend.layer({ repository }).pipe(
      Layer.provide(HttpRegistry.layerNode({ registry: host, retry: { maxRetries: 0 } })),
      Layer.provide(Credentials.layerNone),
      Layer.provide(RateLimiter.layerUnlimited)
    ),
    workspace
  )

/** The tags of `repository` on a plain registry (distribution's listing). */
export const listTags = async (url: string, repository: string): Promise<ReadonlyArray<string>> => {
  const response = await fetch(`${url}/v2/${repository}/tags/list`)
  if (response.status === 404) return []
  const body = (await response.json()) as { tags?: Array<string> | null }
  return body.tags ?? []
}

/** A unique repository path per run and name. */
export const uniqueRepository = (name: string): string =>
  `cli-test/${name}-${Date.now().toString(36)}${Math.floor(Math.random() * 1e6).toString(36)}`

// ---------------------------------------------------------------------------------------------
// A terminal: `script` (util-linux) gives the command a pseudo-terminal
// ---------------------------------------------------------------------------------------------

export const hasScript = Fs.existsSync("/usr/bin/script")

/**
 * Run `oras-state args…` on a pseudo-terminal; once its output contains `prompt`, type `answer`.
 * Resolves with the exit code and everything the terminal showed.
 */
export const runOnTerminal = (
  args: ReadonlyArray<string>,
  prompt: string,
  answer: string
): Promise<{ readonly code: number | null; readonly output: string }> =>
  new Promise((resolve, reject) => {
    const quote = (s: string) => `'${s.replace(/'/g, "'\\''")}'`
    const command = [process.execPath, bin, ...args].map(quote).join(" ")
    const child = spawn("/usr/bin/script", ["-qec", command, "/dev/null"], {
      env: baseEnv() as NodeJS.ProcessEnv,
      stdio: ["pipe", "pipe", "pipe"]
    })
    let output = ""
    let answered = false
    const onData = (b: Buffer) => {
      output += b.toString()
      if (!answered && output.includes(prompt)) {
        answered = true
        child.stdin.write(answer)
      }
    }
    child.stdout.on("data", onData)
    child.stderr.on("data", onData)
    const timer = setTimeout(() => {
      child.kill("SIGKILL")
      reject(new Error(`no prompt on the terminal: ${output}`))
    }, 30_000)
    child.on("error", reject)
    child.on("close", (code) => {
      clearTimeout(timer)
      resolve({ code, output })
    })
  })
