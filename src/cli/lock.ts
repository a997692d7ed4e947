/**
 * `oras-state lock show [ws]` and `oras-state lock force-unlock [ws] [--id ID] [--yes]`.
 *
 * `lock show` exits 0 when the workspace is unlocked and 3 when it is locked, so scripts can test
 * it. `force-unlock` shows the holder first, then removes exactly that lock (its ID is passed
 * on, so a lock taken meanwhile by someone else is never removed); without `--yes` it asks on a
 * terminal and refuses (exit 2) when stdin is not one.
 *
 * @since 0.1.0
 */
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import * as Prompt from "@effect/cli/Prompt"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import { LockIdMismatch } from "../Errors.js"
import type { CurrentLockInfo } from "../StateBackend.js"
import {
  globalOptions,
  missingSubcommand,
  runCommand,
  withBackend,
  workspaceArg,
  workspaceOf,
  writeStdout
} from "./context.js"
import { Aborted, ExitCode, UsageError } from "./errors.js"
import { formatDuration, isoOf } from "./format.js"

/**
 * The holder as JSON.
 *
 * @since 0.1.0
 * @category formatting
 */
export const lockJson = (workspace: string, lock: CurrentLockInfo) => ({
  workspace,
  locked: true,
  lock: lock.info,
  expiresAt: isoOf(lock.expiresAt) ?? null,
  writer: lock.ours ? "oras-state" : "other"
})

/**
 * The holder as text.
 *
 * @since 0.1.0
 * @category formatting
 */
export const describeLock = (workspace: string, lock: CurrentLockInfo, now: number): string => {
  const i = lock.info
  const expires = lock.expiresAt === undefined
    ? "never (no lease)"
    : `${isoOf(lock.expiresAt)} (${lock.expiresAt > now ? `in ${formatDuration(lock.expiresAt - now)}` : "due"})`
  const rows: Array<readonly [string, string]> = [
    ["ID", i.ID],
    ["Who", i.Who],
    ["Operation", i.Operation],
    ["Created", i.Created],
    ["Expires", expires],
    ["Version", i.Version],
    ["Info", i.Info],
    ["Path", i.Path],
    ["Written by", lock.ours ? "oras-state" : "another client (e.g. ghoten)"]
  ]
  return [
    `workspace ${JSON.stringify(workspace)} is locked`,
    ...rows.filter(([, v]) => v !== "").map(([k, v]) => `  ${`${k}:`.padEnd(12)}${v}`)
  ].join("\n")
}

const show = Command.make("show", { ...globalOptions, workspace: workspaceArg }, (input) =>
  runCommand(input, (cli) =>
    Effect.gen(function*() {
      const ws = yield* workspaceOf(input.workspace)
      return yield* withBackend(cli, (backend) =>
        Effect.gen(function*() {
          const manager = yield* backend.stateManager(ws)
          const lock = yield* manager.lockInfo
          if (Option.isNone(lock)) {
            return { json: { workspace: ws, locked: false }, human: `workspace ${JSON.stringify(ws)} is not locked` }
          }
          const now = yield* Clock.currentTimeMillis
          return {
            json: lockJson(ws, lock.value),
            human: describeLock(ws, lock.value, now),
            exitCode: ExitCode.conflict
          }
        }))
    }))).pipe(Command.withDescription("Show who holds the lock of a workspace. Exit code 0: unlocked, 3: locked"))

const forceUnlock = Command.make("force-unlock", {
  ...globalOptions,
  workspace: workspaceArg,
  id: Options.text("id").pipe(
    Options.withDescription("Remove the lock only if it has this ID"),
    Options.optional
  ),
  yes: Options.boolean("yes").pipe(
    Options.withAlias("y"),
    Options.withDescription("Do not ask for confirmation")
  )
}, (input) =>
  runCommand(input, (cli) =>
    Effect.gen(function*() {
      const ws = yield* workspaceOf(input.workspace)
      return yield* withBackend(cli, (backend) =>
        Effect.gen(function*() {
          const manager = yield* backend.stateManager(ws)
          const lock = yield* manager.lockInfo
          if (Option.isNone(lock)) {
            return {
              json: { workspace: ws, removed: null },
              human: `workspace ${JSON.stringify(ws)} is not locked; nothing to do`
            }
          }
          const holder = lock.value.info
          if (Option.isSome(input.id) && input.id.value !== holder.ID) {
            return yield* new LockIdMismatch({ workspace: ws, given: input.id.value, held: holder.ID })
          }
          const now = yield* Clock.currentTimeMillis
          if (!cli.json) yield* writeStdout(`${describeLock(ws, lock.value, now)}\n`)
          if (!input.yes) {
            if (process.stdin.isTTY !== true) {
              return yield* new UsageError({
                message: "refusing to force-unlock without --yes: stdin is not a terminal to confirm on"
              })
            }
            const confirmed = yield* Prompt.run(Prompt.confirm({
              message: `Remove the lock ${holder.ID} held by ${holder.Who || "an unknown holder"}?`,
              initial: false
            })).pipe(Effect.catchTag("QuitException", () => Effect.succeed(false)))
            if (!confirmed) return yield* new Aborted({ message: "force-unlock declined; the lock is unchanged" })
          }
          // Exactly the lock shown: one taken meanwhile by someone else is left alone.
          const removed = yield* manager.forceUnlock(holder.ID)
          if (Option.isNone(removed)) {
            return {
              json: { workspace: ws, removed: null },
              human: `the lock was released meanwhile; nothing removed`
            }
          }
          return {
            json: { workspace: ws, removed: removed.value },
            human: `removed lock ${removed.value.ID} of workspace ${JSON.stringify(ws)}`
          }
        }))
    }))).pipe(
    Command.withDescription(
      "Remove a workspace's lock, whoever holds it, after showing the holder. Asks for confirmation unless --yes"
    )
  )

/**
 * @since 0.1.0
 * @category commands
 */
export const command = Command.make("lock", {}, () => missingSubcommand("lock", ["show", "force-unlock"])).pipe(
  Command.withDescription("Inspect and remove workspace locks"),
  Command.withSubcommands([show, forceUnlock])
)
