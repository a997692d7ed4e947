/**
 * `oras-state serve [--host H] [--port P] [--username U --password-env VAR]`: the Terraform `http`
 * backend server (`Server`) in front of the target store. Prints the `backend "http"` block to
 * paste once listening (under `--json`: one document `{url, store, backend}`), logs one line per
 * request on stderr, and shuts down gracefully on SIGINT/SIGTERM.
 *
 * `Server` (and the HTTP server stack under it) is loaded only when `serve` runs, which keeps the
 * start-up of every other command short.
 *
 * @since 0.1.0
 */
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import type * as Server from "../Server.js"
import { backendLayer, globalOptions, jsonText, runCommand, writeStdout } from "./context.js"
import { UsageError } from "./errors.js"

// `Server.defaultHost` / `Server.defaultPort`, without loading the server at start-up.
const defaultHost = "127.0.0.1"
const defaultPort = 8080

/**
 * @since 0.1.0
 * @category commands
 */
export const command = Command.make("serve", {
  ...globalOptions,
  host: Options.text("host").pipe(
    Options.withDescription(`Interface to listen on (default ${defaultHost})`),
    Options.withDefault(defaultHost)
  ),
  port: Options.integer("port").pipe(
    Options.withDescription(`Port to listen on (default ${defaultPort}; 0 picks a free one)`),
    Options.withDefault(defaultPort)
  ),
  username: Options.text("username").pipe(
    Options.withDescription("Require HTTP Basic auth with this user (Terraform's username / TF_HTTP_USERNAME)"),
    Options.optional
  ),
  passwordEnv: Options.text("password-env").pipe(
    Options.withDescription("Environment variable holding the Basic auth password (required with --username)"),
    Options.optional
  )
}, (input) =>
  runCommand(input, (cli) =>
    Effect.gen(function*() {
      if (Option.isSome(input.username) !== Option.isSome(input.passwordEnv)) {
        return yield* new UsageError({ message: "--username and --password-env go together" })
      }
      let auth: Server.ServeOptions["auth"] = undefined
      if (Option.isSome(input.username) && Option.isSome(input.passwordEnv)) {
        const variable = input.passwordEnv.value
        const password = process.env[variable]
        if (password === undefined || password === "") {
          return yield* new UsageError({ message: `--password-env: the environment variable ${variable} is not set` })
        }
        auth = { username: input.username.value, password: Redacted.make(password) }
      }
      const target = yield* cli.target
      const server = yield* Effect.promise(() => import("../Server.js"))
      return yield* Effect.scoped(Effect.gen(function*() {
        const running = yield* server.start({ host: input.host, port: input.port, auth })
        const block = server.backendBlock(running.url, Option.isSome(input.username) ? { username: input.username.value } : {})
        yield* writeStdout(
          cli.json
            ? jsonText({ url: running.url, store: target.display, backend: block })
            : [
              `oras-state ${target.display} served on ${running.url}`,
              "",
              "Paste into your Terraform/OpenTofu configuration:",
              "",
              block
            ].join("\n")
        )
        return yield* Effect.never
      })).pipe(
        Effect.provide(Layer.fresh(backendLayer(target, { enabled: false, tty: false }))),
        Logger.withMinimumLogLevel(LogLevel.Info)
      )
    }))).pipe(
    Command.withDescription(
      "Serve the store as a Terraform/OpenTofu http backend and print the backend block to paste"
    )
  )
