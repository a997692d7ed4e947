/**
 * `oras-state versions list|show|diff|restore`: the history of a workspace's state.
 *
 * Version references are numbers (`3`) or `current` (the state as it is now).
 *
 * @since 0.1.0
 */
import * as Args from "@effect/cli/Args"
import * as Command from "@effect/cli/Command"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import type { InvalidReference } from "../Errors.js"
import type { StateManager, StatePayload } from "../StateBackend.js"
import {
  cliLockInfo,
  globalOptions,
  missingSubcommand,
  runCommand,
  withBackend,
  workspaceArg,
  workspaceOf
} from "./context.js"
import { InvalidState, NotFound, UsageError } from "./errors.js"
import { shortDigest, table } from "./format.js"
import { formatBytes } from "./progress.js"
import { diffStates, parseState, showValue, type StateDiff } from "./stateDiff.js"

type VersionRef = { readonly _tag: "Current" } | { readonly _tag: "Number"; readonly n: number }

const parseRef = (text: string): Effect.Effect<VersionRef, UsageError> => {
  const t = text.trim().toLowerCase()
  if (t === "current" || t === "latest") return Effect.succeed({ _tag: "Current" })
  if (/^v?[1-9][0-9]{0,9}$/.test(t)) return Effect.succeed({ _tag: "Number", n: Number(t.replace(/^v/, "")) })
  return Effect.fail(new UsageError({ message: `${JSON.stringify(text)} is not a version (a number ≥ 1, or current)` }))
}

const refText = (ref: VersionRef) => (ref._tag === "Current" ? "current" : String(ref.n))

const versionArg = (name: string, description: string) =>
  Args.text({ name }).pipe(Args.withDescription(description))

/**
 * Fetch a version's payload, or fail with `NotFound`.
 *
 * @since 0.1.0
 * @category utils
 */
const fetchVersion = (manager: StateManager, ref: VersionRef) =>
  Effect.flatMap(
    ref._tag === "Current" ? manager.get : manager.getVersion(ref.n),
    (payload): Effect.Effect<StatePayload, NotFound> =>
      Option.isSome(payload)
        ? Effect.succeed(payload.value)
        : Effect.fail(
          new NotFound({
            message: ref._tag === "Current"
              ? `workspace ${JSON.stringify(manager.workspace)} has no state`
              : `workspace ${JSON.stringify(manager.workspace)} has no version ${ref.n}`
          })
        )
  )

const stateJsonOrNull = (data: Uint8Array): unknown => {
  try {
    return JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(data))
  } catch {
    return undefined
  }
}

/**
 * A state payload as JSON: metadata plus the state document (or its bytes in base64 when it is
 * not JSON, e.g. encrypted).
 *
 * @since 0.1.0
 * @category formatting
 */
export const payloadJson = (workspace: string, payload: StatePayload) => {
  const state = stateJsonOrNull(payload.data)
  return {
    workspace,
    version: payload.version ?? null,
    digest: payload.digest,
    updatedAt: payload.updatedAt ?? null,
    size: payload.data.byteLength,
    ...(state === undefined ? { stateBase64: Buffer.from(payload.data).toString("base64") } : { state })
  }
}

const list = Command.make("list", { ...globalOptions, workspace: workspaceArg }, (input) =>
  runCommand(input, (cli) =>
    Effect.gen(function*() {
      const ws = yield* workspaceOf(input.workspace)
      return yield* withBackend(cli, (backend) =>
        Effect.gen(function*() {
          const manager = yield* backend.stateManager(ws)
          const versions = yield* manager.versions
          const human = versions.length === 0
            ? `workspace ${JSON.stringify(ws)} has no versions`
            : table(
              ["VERSION", "DIGEST", "SIZE", "UPDATED", "CURRENT"],
              versions.map((v) => [
                String(v.version),
                shortDigest(v.digest),
                formatBytes(v.size),
                v.updatedAt ?? "-",
                v.current ? "*" : ""
              ])
            )
          return {
            json: { workspace: ws, versions: versions.map((v) => ({ ...v, updatedAt: v.updatedAt ?? null })) },
            human
          }
        }))
    }))).pipe(Command.withDescription("List the versions of a workspace's state (sizes as stored)"))

const show = Command.make("show", {
  ...globalOptions,
  version: versionArg("version", "Version number, or current"),
  workspace: workspaceArg
}, (input) =>
  runCommand(input, (cli) =>
    Effect.gen(function*() {
      const ws = yield* workspaceOf(input.workspace)
      const ref = yield* parseRef(input.version)
      return yield* withBackend(cli, (backend) =>
        Effect.gen(function*() {
          const manager = yield* backend.stateManager(ws)
          const payload = yield* fetchVersion(manager, ref)
          return { json: payloadJson(ws, payload), raw: payload.data }
        }))
    }))).pipe(Command.withDescription("Print the state bytes of a version (--json: with its metadata)"))

const diffSummary = (d: StateDiff): string => {
  const r = d.resources
  const o = d.outputs
  return `resources: ${r.added.length} added, ${r.removed.length} removed, ${r.changed.length} changed; ` +
    `outputs: ${o.added.length} added, ${o.removed.length} removed, ${o.changed.length} changed`
}

const humanDiff = (
  header: string,
  warnings: ReadonlyArray<string>,
  d: StateDiff
): string => {
  const resourceRows = [
    ...d.resources.added.map((a) => ["added", a, ""]),
    ...d.resources.removed.map((a) => ["removed", a, ""]),
    ...d.resources.changed.map((c) => [
      "changed",
      c.address,
      [
        c.attributes.length > 0 ? `attributes: ${c.attributes.join(", ")}` : "",
        c.meta.length > 0 ? `${c.meta.join(", ")}` : ""
      ].filter((s) => s !== "").join("; ")
    ])
  ]
  const outputRows = [
    ...d.outputs.added.map((o) => ["added", o.name, "", showValue(o.value)]),
    ...d.outputs.removed.map((o) => ["removed", o.name, showValue(o.value), ""]),
    ...d.outputs.changed.map((o) => ["changed", o.name, showValue(o.from), showValue(o.to)])
  ]
  return [
    header,
    ...warnings.map((w) => `warning: ${w}`),
    "",
    resourceRows.length === 0 ? "No resource changes." : table(["RESOURCE", "ADDRESS", "DETAIL"], resourceRows),
    "",
    outputRows.length === 0 ? "No output changes." : table(["OUTPUT", "NAME", "FROM", "TO"], outputRows),
    "",
    diffSummary(d)
  ].join("\n")
}

const diff = Command.make("diff", {
  ...globalOptions,
  from: versionArg("from", "Older version (number, or current)"),
  to: versionArg("to", "Newer version (number, or current)"),
  workspace: workspaceArg
}, (input) =>
  runCommand(input, (cli) =>
    Effect.gen(function*() {
      const ws = yield* workspaceOf(input.workspace)
      const fromRef = yield* parseRef(input.from)
      const toRef = yield* parseRef(input.to)
      return yield* withBackend(cli, (backend) =>
        Effect.gen(function*() {
          const manager = yield* backend.stateManager(ws)
          const [fromPayload, toPayload] = yield* Effect.all(
            [fetchVersion(manager, fromRef), fetchVersion(manager, toRef)],
            { concurrency: 2 }
          )
          const parse = (ref: VersionRef, payload: StatePayload) =>
            Either.match(parseState(payload.data), {
              onLeft: (reason) =>
                Effect.fail(new InvalidState({ message: `version ${refText(ref)} of ${JSON.stringify(ws)}: ${reason}` })),
              onRight: Effect.succeed
            })
          const from = yield* parse(fromRef, fromPayload)
          const to = yield* parse(toRef, toPayload)
          const d = diffStates(from, to)
          const side = (ref: VersionRef, payload: StatePayload, s: typeof from) => ({
            ref: refText(ref),
            version: payload.version ?? null,
            digest: payload.digest,
            serial: s.serial ?? null,
            lineage: s.lineage ?? null,
            terraformVersion: s.terraformVersion ?? null
          })
          const warnings = from.lineage !== to.lineage
            ? [`the lineages differ (${from.lineage ?? "none"} vs ${to.lineage ?? "none"}): these are unrelated states`]
            : []
          const label = (ref: VersionRef, payload: StatePayload, serial: number | undefined) =>
            `version ${payload.version ?? refText(ref)}${ref._tag === "Current" ? " (current)" : ""} (serial ${serial ?? "?"})`
          const header = `workspace ${JSON.stringify(ws)}: ${label(fromRef, fromPayload, from.serial)} → ${
            label(toRef, toPayload, to.serial)
          }`
          return {
            json: {
              workspace: ws,
              from: side(fromRef, fromPayload, from),
              to: side(toRef, toPayload, to),
              warnings,
              ...d,
              summary: {
                resources: {
                  added: d.resources.added.length,
                  removed: d.resources.removed.length,
                  changed: d.resources.changed.length
                },
                outputs: {
                  added: d.outputs.added.length,
                  removed: d.outputs.removed.length,
                  changed: d.outputs.changed.length
                }
              }
            },
            human: humanDiff(header, warnings, d)
          }
        }))
    }))).pipe(
    Command.withDescription(
      "Compare two versions: resources added, removed and changed by address, and outputs (sensitive values masked)"
    )
  )

const restore = Command.make("restore", {
  ...globalOptions,
  version: versionArg("version", "Version number to restore"),
  workspace: workspaceArg
}, (input) =>
  runCommand(input, (cli) =>
    Effect.gen(function*() {
      const ws = yield* workspaceOf(input.workspace)
      const ref = yield* parseRef(input.version)
      if (ref._tag === "Current") {
        return yield* new UsageError({ message: "restore takes a version number; current is already current" })
      }
      return yield* withBackend(cli, (backend, target) =>
        Effect.gen(function*() {
          const manager = yield* backend.stateManager(ws)
          const info = yield* cliLockInfo("oras-state versions restore", `${target.display} workspace ${ws}`)
          const result = yield* manager.withLock(info, (lockId) => manager.restore(ref.n, { lockId })).pipe(
            Effect.catchTag("InvalidReference", (e: InvalidReference): Effect.Effect<never, InvalidReference | NotFound> =>
              // `restore` names a missing version as an invalid reference.
              e.kind === "reference"
                ? Effect.fail(new NotFound({ message: `workspace ${JSON.stringify(ws)} has no version ${ref.n}` }))
                : Effect.fail(e))
          )
          return {
            json: { workspace: ws, restored: ref.n, ...result },
            human: `restored version ${ref.n} of workspace ${JSON.stringify(ws)} as version ${result.version} (${
              shortDigest(result.digest)
            })`
          }
        }))
    }))).pipe(
    Command.withDescription("Restore a version as a new current version (roll-forward), under the workspace lock")
  )

/**
 * @since 0.1.0
 * @category commands
 */
export const command = Command.make("versions", {}, () => missingSubcommand("versions", ["list", "show", "diff", "restore"]))
  .pipe(
    Command.withDescription("History of a workspace's state"),
    Command.withSubcommands([list, show, diff, restore])
  )
