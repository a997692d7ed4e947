/**
 * The `oras-state` command tree and `main(argv)`: runs the CLI and yields the process exit code
 * (see `errors.ts` for the table, also printed by every `--help`).
 *
 * @since 0.1.0
 */
import * as Command from "@effect/cli/Command"
import * as HelpDoc from "@effect/cli/HelpDoc"
import * as ValidationError from "@effect/cli/ValidationError"
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as Ref from "effect/Ref"
import { dashArgument, ExitStatus, missingSubcommand, reportFailure, rootCommand, VERSION } from "./context.js"
import * as Doctor from "./doctor.js"
import { ExitCode, exitCodeHelp } from "./errors.js"
import * as Lock from "./lock.js"
import * as Serve from "./serve.js"
import * as State from "./state.js"
import * as Versions from "./versions.js"
import * as Workspaces from "./workspaces.js"

const subcommands = ["workspaces", "lock", "versions", "state", "doctor", "serve"]

/**
 * @since 0.1.0
 * @category commands
 */
export const command = rootCommand.pipe(
  Command.withHandler(() => missingSubcommand("oras-state", subcommands)),
  Command.withDescription(
    "Terraform/OpenTofu state in OCI registries: workspaces, locks, versions, state, registry checks and the http-backend server. " +
      "The state lives in --repository host/repo, else TF_BACKEND_ORAS_REPOSITORY, else the embedded store --store (default ./.oras-state). " +
      "Global options go before or after the command."
  ),
  Command.withSubcommands([
    Workspaces.command,
    Lock.command,
    Versions.command,
    State.command,
    Doctor.command,
    Serve.command
  ])
)

const footer = HelpDoc.sequence(
  HelpDoc.h1("EXIT CODES"),
  HelpDoc.p(exitCodeHelp.map(([code, meaning]) => `${code.padStart(3)}  ${meaning}`).join("\n"))
)

const cli = Command.run(command, { name: "oras-state", version: VERSION, footer })

const textOf = (message: unknown): string =>
  (Array.isArray(message) ? message : [message]).map((m) => (typeof m === "string" ? m : String(m))).join(" ")

// Logs go to stderr, never stdout (which carries results and JSON documents).
const stderrLogger = Logger.make(({ cause, date, logLevel, message }) => {
  const details = Cause.isEmpty(cause) ? "" : `: ${Cause.pretty(cause).split("\n")[0]}`
  process.stderr.write(
    LogLevel.greaterThanEqual(logLevel, LogLevel.Warning)
      ? `oras-state: ${logLevel.label.toLowerCase()}: ${textOf(message)}${details}\n`
      : `${date.toISOString()} ${textOf(message)}${details}\n`
  )
})

/**
 * The environment of the CLI: Node's file system, path and terminal, logs on stderr at warning
 * level and above (`serve` logs requests at info; `--log-level` changes it).
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = Layer.mergeAll(
  NodeContext.layer,
  Logger.replace(Logger.defaultLogger, stderrLogger),
  Logger.minimumLogLevel(LogLevel.Warning)
)

/**
 * Run the CLI on `process.argv`-style arguments; yields the exit code.
 *
 * @since 0.1.0
 * @category entry points
 */
export const main = (argv: ReadonlyArray<string>): Effect.Effect<number> =>
  Effect.gen(function*() {
    const status = yield* Ref.make<number>(ExitCode.ok)
    const args = argv.map((arg, i) => (i >= 2 && arg === "-" ? dashArgument : arg))
    const result = yield* Effect.either(cli(args).pipe(Effect.provideService(ExitStatus, status)))
    if (result._tag === "Left") {
      // The parser has printed its message and usage already.
      if (ValidationError.isValidationError(result.left)) return ExitCode.usage
      return yield* reportFailure(false, result.left)
    }
    return yield* Ref.get(status)
  }).pipe(Effect.provide(layer))
