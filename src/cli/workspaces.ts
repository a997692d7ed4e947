/**
 * `oras-state workspaces list | delete <name> [--force]`.
 *
 * @since 0.1.0
 */
import * as Args from "@effect/cli/Args"
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import { globalOptions, missingSubcommand, runCommand, withBackend, workspaceOf } from "./context.js"

const list = Command.make("list", { ...globalOptions }, (input) =>
  runCommand(input, (cli) =>
    withBackend(cli, (backend, target) =>
      Effect.map(backend.workspaces, (workspaces) => ({
        json: { store: target.display, workspaces },
        human: workspaces.join("\n")
      }))))).pipe(Command.withDescription("List the workspaces that have state (default is always listed)"))

const del = Command.make("delete", {
  ...globalOptions,
  workspace: Args.text({ name: "workspace" }).pipe(Args.withDescription("Workspace to delete")),
  force: Options.boolean("force").pipe(Options.withDescription("Delete even while the workspace is locked"))
}, (input) =>
  runCommand(input, (cli) =>
    Effect.gen(function*() {
      const name = yield* workspaceOf(Option.some(input.workspace))
      return yield* withBackend(cli, (backend) =>
        Effect.as(backend.deleteWorkspace(name, { force: input.force }), {
          json: { workspace: name, deleted: true },
          human: `deleted workspace ${JSON.stringify(name)} (state, versions and lock)`
        }))
    }))).pipe(
    Command.withDescription(
      "Delete a workspace: its state, versions and lock. Refuses default, and a locked workspace unless --force"
    )
  )

/**
 * @since 0.1.0
 * @category commands
 */
export const command = Command.make("workspaces", {}, () => missingSubcommand("workspaces", ["list", "delete"])).pipe(
  Command.withDescription("Workspaces of the repository"),
  Command.withSubcommands([list, del])
)
