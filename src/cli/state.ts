/**
 * `oras-state state pull [ws] [-o file]` and `oras-state state push <file|-> [ws] [--force]`.
 *
 * `push` works under the workspace lock and refuses, as `terraform state push` does, a state of
 * another lineage, a lower serial, or the same serial with other content; `--force` skips those
 * checks. Pushing the very bytes already current writes nothing.
 *
 * @since 0.1.0
 */
import * as Args from "@effect/cli/Args"
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import * as FileSystem from "@effect/platform/FileSystem"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import {
  cliLockInfo,
  globalOptions,
  isDash,
  missingSubcommand,
  runCommand,
  withBackend,
  workspaceArg,
  workspaceOf
} from "./context.js"
import { FileError, InvalidState, NotFound, StateMismatch } from "./errors.js"
import { shortDigest } from "./format.js"
import { formatBytes } from "./progress.js"
import { payloadJson } from "./versions.js"

const fileFailure = (path: string, action: string) => (error: { readonly _tag: string; readonly reason?: string; readonly message: string }) =>
  error._tag === "SystemError" && error.reason === "NotFound"
    ? new NotFound({ message: `${path}: no such file` })
    : new FileError({ message: `cannot ${action} ${path}: ${error.message}` })

const readStdin = Effect.tryPromise({
  try: async () => {
    const chunks: Array<Buffer> = []
    for await (const chunk of process.stdin) chunks.push(typeof chunk === "string" ? Buffer.from(chunk) : chunk as Buffer)
    const all = Buffer.concat(chunks)
    return new Uint8Array(all.buffer, all.byteOffset, all.byteLength)
  },
  catch: (cause) => new FileError({ message: `cannot read stdin: ${String(cause)}` })
})

const readInput = (path: string) =>
  isDash(path)
    ? readStdin
    : Effect.flatMap(FileSystem.FileSystem, (fs) => Effect.mapError(fs.readFile(path), fileFailure(path, "read")))

interface Lineage {
  readonly lineage: string | undefined
  readonly serial: number | undefined
}

const lineageOf = (data: Uint8Array): Option.Option<Lineage> => {
  try {
    const json = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(data)) as unknown
    if (typeof json !== "object" || json === null || Array.isArray(json)) return Option.none()
    const record = json as Record<string, unknown>
    return Option.some({
      lineage: typeof record["lineage"] === "string" ? record["lineage"] : undefined,
      serial: typeof record["serial"] === "number" ? record["serial"] : undefined
    })
  } catch {
    return Option.none()
  }
}

const sameBytes = (a: Uint8Array, b: Uint8Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(b)

const pull = Command.make("pull", {
  ...globalOptions,
  workspace: workspaceArg,
  output: Options.text("output").pipe(
    Options.withAlias("o"),
    Options.withDescription("Write the state to this file instead of stdout (- for stdout)"),
    Options.optional
  )
}, (input) =>
  runCommand(input, (cli) =>
    Effect.gen(function*() {
      const ws = yield* workspaceOf(input.workspace)
      const payload = yield* withBackend(cli, (backend) =>
        Effect.gen(function*() {
          const manager = yield* backend.stateManager(ws)
          const found = yield* manager.get
          if (Option.isNone(found)) return yield* new NotFound({ message: `workspace ${JSON.stringify(ws)} has no state` })
          return found.value
        }))
      if (Option.isNone(input.output) || isDash(input.output.value)) {
        return { json: payloadJson(ws, payload), raw: payload.data }
      }
      const path = input.output.value
      const fs = yield* FileSystem.FileSystem
      yield* fs.writeFile(path, payload.data).pipe(Effect.mapError(fileFailure(path, "write")))
      return {
        json: {
          workspace: ws,
          version: payload.version ?? null,
          digest: payload.digest,
          updatedAt: payload.updatedAt ?? null,
          size: payload.data.byteLength,
          file: path
        },
        human: `wrote ${formatBytes(payload.data.byteLength)} of workspace ${JSON.stringify(ws)} (version ${
          payload.version ?? "?"
        }) to ${path}`
      }
    }))).pipe(Command.withDescription("Print the current state of a workspace (or write it to a file with -o)"))

const push = Command.make("push", {
  ...globalOptions,
  file: Args.text({ name: "file" }).pipe(Args.withDescription("State file to push, or - for stdin")),
  workspace: workspaceArg,
  force: Options.boolean("force").pipe(
    Options.withDescription("Push even over a state of another lineage or a higher serial")
  )
}, (input) =>
  runCommand(input, (cli) =>
    Effect.gen(function*() {
      const ws = yield* workspaceOf(input.workspace)
      const data = yield* readInput(input.file)
      const incoming = lineageOf(data)
      if (Option.isNone(incoming)) {
        return yield* new InvalidState({ message: `${isDash(input.file) ? "stdin" : input.file} is not a JSON state document` })
      }
      if (!input.force && (incoming.value.lineage === undefined || incoming.value.serial === undefined)) {
        return yield* new InvalidState({
          message: `${isDash(input.file) ? "stdin" : input.file} has no lineage or serial (use --force to push it anyway)`
        })
      }
      return yield* withBackend(cli, (backend, target) =>
        Effect.gen(function*() {
          const manager = yield* backend.stateManager(ws)
          const info = yield* cliLockInfo("oras-state state push", `${target.display} workspace ${ws}`)
          return yield* manager.withLock(info, (lockId) =>
            Effect.gen(function*() {
              const current = input.force ? Option.none() : yield* manager.get
              if (Option.isSome(current)) {
                if (sameBytes(current.value.data, data)) {
                  return {
                    json: { workspace: ws, pushed: false, version: current.value.version ?? null, digest: current.value.digest },
                    human: `state unchanged (already version ${current.value.version ?? "?"}); nothing pushed`
                  }
                }
                yield* checkImport(lineageOf(current.value.data), incoming.value)
              }
              const result = yield* manager.put(data, { lockId })
              return {
                json: { workspace: ws, pushed: true, ...result, serial: incoming.value.serial ?? null, lineage: incoming.value.lineage ?? null },
                human: `pushed ${formatBytes(data.byteLength)} to workspace ${JSON.stringify(ws)} as version ${result.version} (${
                  shortDigest(result.digest)
                })`
              }
            }))
        }))
    }))).pipe(
    Command.withDescription(
      "Replace the state of a workspace with a file (- for stdin), under the lock; refuses another lineage or a lower serial unless --force"
    )
  )

// Terraform's `statemgr.CheckValidImport`.
const checkImport = (current: Option.Option<Lineage>, incoming: Lineage): Effect.Effect<void, StateMismatch> => {
  if (Option.isNone(current) || current.value.lineage === undefined || current.value.serial === undefined) {
    return Effect.fail(
      new StateMismatch({
        message: "the current state has no readable lineage and serial, so the push cannot be checked (use --force)"
      })
    )
  }
  const cur = current.value
  if (cur.lineage !== incoming.lineage) {
    return Effect.fail(
      new StateMismatch({
        message: `cannot push a state with lineage ${JSON.stringify(incoming.lineage)} over unrelated state with lineage ${
          JSON.stringify(cur.lineage)
        } (use --force to overwrite)`
      })
    )
  }
  if (incoming.serial! < cur.serial!) {
    return Effect.fail(
      new StateMismatch({
        message: `cannot push a state with serial ${incoming.serial} over a newer state with serial ${cur.serial} (use --force to overwrite)`
      })
    )
  }
  if (incoming.serial === cur.serial) {
    return Effect.fail(
      new StateMismatch({
        message: `cannot overwrite the current state with serial ${cur.serial} with a different state that has the same serial (use --force to overwrite)`
      })
    )
  }
  return Effect.void
}

/**
 * @since 0.1.0
 * @category commands
 */
export const command = Command.make("state", {}, () => missingSubcommand("state", ["pull", "push"])).pipe(
  Command.withDescription("Read and replace the current state"),
  Command.withSubcommands([pull, push])
)
