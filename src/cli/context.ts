/**
 * What every `oras-state` command shares: the global options, where the state lives (a registry
 * repository or the embedded OCI-layout store), the layers built from that, and how a command's
 * result or failure reaches stdout, stderr and the exit code.
 *
 * ## Global options
 * They are accepted before the command (`oras-state --json lock show`) and after it
 * (`oras-state lock show --json`); a value given after the command wins.
 *
 * ## Where the state lives
 * 1. `--repository host[:port]/path`: that registry repository (the other backend keys come from
 *    the `TF_BACKEND_ORAS_*` variables; command-line options win over them);
 * 2. else `--store DIR`: the embedded OCI image-layout store in DIR, repository `default`;
 * 3. else `TF_BACKEND_ORAS_REPOSITORY`;
 * 4. else the embedded store in `./.oras-state`.
 * `--repository` and `--store` together are a usage error.
 *
 * ## Output
 * A command yields an `Outcome`: a JSON value (printed as one document under `--json`), a human
 * text or raw bytes (otherwise), and an exit code. Failures become one line on stderr,
 * `oras-state: <Tag>: <message>`, plus `{"error": {...}}` on stdout under `--json`, and the exit
 * code of `errors.ts`.
 *
 * @since 0.1.0
 */
import * as Args from "@effect/cli/Args"
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import * as Cause from "effect/Cause"
import * as Config from "effect/Config"
import * as Context from "effect/Context"
import * as DateTime from "effect/DateTime"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Ref from "effect/Ref"
import * as Schema from "effect/Schema"
import * as Os from "node:os"
import type * as HttpClient from "@effect/platform/HttpClient"
import * as BackendConfig from "../BackendConfig.js"
import { InvalidConfig } from "../Errors.js"
import * as LockInfo from "../LockInfo.js"
import type { Registry } from "../Registry.js"
import * as StateBackend from "../StateBackend.js"
import { exitCodeOf, ExitCode, messageOf, tagOf, UsageError } from "./errors.js"
import * as Progress from "./progress.js"

/**
 * @since 0.1.0
 * @category constants
 */
export const VERSION = "0.1.0"

/**
 * @since 0.1.0
 * @category constants
 */
export const defaultStoreDir = "./.oras-state"

/**
 * The repository used inside the embedded store.
 *
 * @since 0.1.0
 * @category constants
 */
export const embeddedRepository = "default"

/**
 * @since 0.1.0
 * @category options
 */
export const globalOptions = {
  repository: Options.text("repository").pipe(
    Options.withPseudoName("host/repo"),
    Options.withDescription(
      "Registry repository host[:port]/path holding the state (else TF_BACKEND_ORAS_REPOSITORY, else the embedded store)"
    ),
    Options.optional
  ),
  store: Options.text("store").pipe(
    Options.withPseudoName("dir"),
    Options.withDescription(`Embedded OCI image-layout store directory (default ${defaultStoreDir}), repository "default"`),
    Options.optional
  ),
  insecure: Options.boolean("insecure").pipe(
    Options.withDescription("Skip TLS verification and allow plain HTTP to the registry")
  ),
  caFile: Options.text("ca-file").pipe(
    Options.withPseudoName("file"),
    Options.withDescription("PEM bundle added to the trusted roots"),
    Options.optional
  ),
  compression: Options.choice("compression", ["none", "gzip"]).pipe(
    Options.withDescription("Compression of states written (default: TF_BACKEND_ORAS_COMPRESSION or none)"),
    Options.optional
  ),
  lockTtl: Options.integer("lock-ttl").pipe(
    Options.withPseudoName("seconds"),
    Options.withDescription("Lease of locks taken by this command, in seconds (0: no expiry)"),
    Options.optional
  ),
  json: Options.boolean("json").pipe(Options.withDescription("Print one JSON document on stdout")),
  progress: Options.boolean("progress").pipe(
    Options.withDescription("Show transfer progress on stderr even when it is not a terminal")
  )
} as const

/**
 * The parsed global options, as each command receives them.
 *
 * @since 0.1.0
 * @category models
 */
export interface GlobalInput {
  readonly repository: Option.Option<string>
  readonly store: Option.Option<string>
  readonly insecure: boolean
  readonly caFile: Option.Option<string>
  readonly compression: Option.Option<"none" | "gzip">
  readonly lockTtl: Option.Option<number>
  readonly json: boolean
  readonly progress: boolean
}

/**
 * The top command without its subcommands: the handlers read its options from here.
 *
 * @since 0.1.0
 * @category commands
 */
export const rootCommand = Command.make("oras-state", globalOptions)

/**
 * Where a command's exit code is recorded.
 *
 * @since 0.1.0
 * @category tags
 */
export class ExitStatus extends Context.Tag("oras-state/cli/ExitStatus")<ExitStatus, Ref.Ref<number>>() {}

/**
 * Where the state lives.
 *
 * @since 0.1.0
 * @category models
 */
export type Target =
  | {
    readonly _tag: "Registry"
    readonly config: BackendConfig.BackendConfig
    readonly registry: string
    readonly repository: string
    readonly display: string
  }
  | {
    readonly _tag: "Embedded"
    readonly config: BackendConfig.BackendConfig
    readonly dir: string
    readonly repository: string
    readonly display: string
  }

/**
 * What a command handler receives.
 *
 * @since 0.1.0
 * @category models
 */
export interface Cli {
  readonly options: GlobalInput
  readonly json: boolean
  /** Whether transfer progress is shown (stderr is a terminal, or `--progress`). */
  readonly progress: Progress.Options
  readonly target: Effect.Effect<Target, InvalidConfig | UsageError>
}

/**
 * A command's result. Under `--json` only `json` is printed; otherwise `raw` (as is) or `human`
 * (plus a newline). `exitCode` defaults to 0.
 *
 * @since 0.1.0
 * @category models
 */
export interface Outcome {
  readonly json: unknown
  readonly human?: string | undefined
  readonly raw?: Uint8Array | undefined
  readonly exitCode?: number | undefined
  /** A failure to report on stderr (one line) besides the output, e.g. the probe `doctor` saw fail. */
  readonly error?: unknown
}

const orElse = <A>(leaf: Option.Option<A>, root: Option.Option<A>): Option.Option<A> =>
  Option.isSome(leaf) ? leaf : root

const mergeGlobals = (root: GlobalInput, leaf: GlobalInput): GlobalInput => ({
  repository: orElse(leaf.repository, root.repository),
  store: orElse(leaf.store, root.store),
  insecure: leaf.insecure || root.insecure,
  caFile: orElse(leaf.caFile, root.caFile),
  compression: orElse(leaf.compression, root.compression),
  lockTtl: orElse(leaf.lockTtl, root.lockTtl),
  json: leaf.json || root.json,
  progress: leaf.progress || root.progress
})

const nonEmpty = (o: Option.Option<string>) => Option.filter(o, (s) => s.trim() !== "")

/**
 * Resolve the target and the backend configuration: `TF_BACKEND_ORAS_*` first, command-line
 * options over it.
 *
 * @since 0.1.0
 * @category constructors
 */
export const resolveTarget = (options: GlobalInput): Effect.Effect<Target, InvalidConfig | UsageError> =>
  Effect.gen(function*() {
    const flagRepository = nonEmpty(options.repository)
    const flagStore = nonEmpty(options.store)
    if (Option.isSome(flagRepository) && Option.isSome(flagStore)) {
      return yield* new UsageError({ message: "--repository and --store exclude each other" })
    }
    const envRepository = nonEmpty(
      yield* Config.option(Config.string("TF_BACKEND_ORAS_REPOSITORY")).pipe(
        Effect.mapError(() => new InvalidConfig({ key: "TF_BACKEND_ORAS_REPOSITORY", reason: "cannot be read" }))
      )
    )
    const embedded = Option.isNone(flagRepository) && (Option.isSome(flagStore) || Option.isNone(envRepository))
    // The embedded store still honours the other variables (compression, versioning, lock TTL…);
    // a placeholder repository lets them decode.
    const base = embedded
      ? { repository: "embedded.invalid/default" }
      : { repository: Option.getOrElse(flagRepository, () => Option.getOrThrow(envRepository)) }
    const fromEnv = yield* BackendConfig.fromEnv(base)
    const encoded = yield* Schema.encode(BackendConfig.BackendConfig)(fromEnv).pipe(
      Effect.mapError(() => new InvalidConfig({ key: "config", reason: "cannot be re-encoded" }))
    )
    const overrides: Record<string, unknown> = {
      ...(embedded ? { repository: base.repository } : {}),
      ...(Option.isSome(flagRepository) ? { repository: flagRepository.value } : {}),
      ...(options.insecure ? { insecure: true } : {}),
      ...(Option.isSome(options.caFile) ? { ca_file: options.caFile.value } : {}),
      ...(Option.isSome(options.compression) ? { compression: options.compression.value } : {}),
      ...(Option.isSome(options.lockTtl) ? { lock_ttl: options.lockTtl.value } : {})
    }
    const config = yield* BackendConfig.decode({ ...encoded, ...overrides }).pipe(
      Effect.mapError((e) => mapFlagKey(e))
    )
    if (embedded) {
      const dir = Option.getOrElse(flagStore, () => defaultStoreDir)
      return {
        _tag: "Embedded",
        config,
        dir,
        repository: embeddedRepository,
        display: `oci-layout:${dir} (repository ${embeddedRepository})`
      } as const
    }
    const parsed = BackendConfig.parseRepository(config.repository)!
    return {
      _tag: "Registry",
      config,
      registry: parsed.registry,
      repository: parsed.path,
      display: config.repository
    } as const
  })

// Name the command-line option in errors about values it set.
const flagNames: Readonly<Record<string, string>> = {
  repository: "--repository / TF_BACKEND_ORAS_REPOSITORY",
  lock_ttl: "--lock-ttl / TF_BACKEND_ORAS_LOCK_TTL",
  ca_file: "--ca-file / TF_BACKEND_ORAS_CA_FILE",
  compression: "--compression / TF_BACKEND_ORAS_COMPRESSION"
}

const mapFlagKey = (e: InvalidConfig): InvalidConfig => {
  const key = flagNames[e.key]
  return key === undefined
    ? e
    : new InvalidConfig({ key, reason: e.reason, ...(e.value === undefined ? {} : { value: e.value }) })
}

/**
 * The state store options of a configuration (as `OrasBackend.storeOptions`, which this module
 * does not import so that the embedded store never loads the HTTP stack).
 *
 * @since 0.1.0
 * @category constructors
 */
export const storeOptions = (target: Target): StateBackend.Options => {
  const versioning = BackendConfig.versioningOf(target.config)
  return {
    repository: target.repository,
    compression: target.config.compression,
    maxStateSize: target.config.max_state_size,
    versioning: { enabled: versioning.enabled, maxVersions: versioning.maxVersions },
    lockTtl: Duration.seconds(target.config.lock_ttl)
  }
}

/**
 * The HTTP registry of a configuration, with the ambient credential chain (docker/podman config
 * files and credential helpers), the configured rate limit and, for `doctor`, a client transform.
 * Loaded on demand.
 *
 * @since 0.1.0
 * @category layers
 */
export const httpRegistryLayer = (
  config: BackendConfig.BackendConfig,
  transformClient?: (client: HttpClient.HttpClient) => HttpClient.HttpClient
): Layer.Layer<Registry, unknown> =>
  Layer.unwrapEffect(
    Effect.map(
      Effect.promise(() =>
        Promise.all([import("../HttpRegistry.js"), import("../Credentials.js"), import("../RateLimiter.js")])
      ),
      ([HttpRegistry, Credentials, RateLimiter]) => {
        const repository = BackendConfig.parseRepository(config.repository)!
        return HttpRegistry.layerNode({
          registry: repository.registry,
          plainHttp: repository.plainHttp || config.insecure,
          insecure: config.insecure,
          caFile: config.ca_file,
          userAgent: config.user_agent ?? `oras-state/${VERSION}`,
          retry: {
            maxRetries: config.retry_max,
            waitMin: Duration.seconds(config.retry_wait_min),
            waitMax: Duration.seconds(config.retry_wait_max)
          },
          transformClient
        }).pipe(
          Layer.provide(Credentials.layerNode()),
          Layer.provide(RateLimiter.layer({ limit: config.rate_limit, burst: config.rate_limit_burst }))
        )
      }
    )
  )

/**
 * The `Registry` a target names; each implementation is loaded on demand.
 *
 * @since 0.1.0
 * @category layers
 */
export const registryLayer = (
  target: Target,
  transformClient?: (client: HttpClient.HttpClient) => HttpClient.HttpClient
): Layer.Layer<Registry, unknown> =>
  target._tag === "Registry"
    ? httpRegistryLayer(target.config, transformClient)
    : Layer.unwrapEffect(
      Effect.map(Effect.promise(() => import("../OciLayoutRegistry.js")), (OciLayoutRegistry) =>
        OciLayoutRegistry.layer(target.dir))
    )

/**
 * `StateBackend` for a target, with transfer progress when enabled.
 *
 * @since 0.1.0
 * @category layers
 */
export const backendLayer = (target: Target, progress: Progress.Options): Layer.Layer<StateBackend.StateBackend, unknown> =>
  StateBackend.layer(storeOptions(target)).pipe(
    Layer.provide(Progress.layer(progress)),
    Layer.provide(registryLayer(target))
  )

/**
 * Run `f` with the `StateBackend` of the command's target; pending retention work finishes
 * before the backend closes.
 *
 * @since 0.1.0
 * @category combinators
 */
export const withBackend = <A, E, R>(
  cli: Cli,
  f: (backend: StateBackend.Service, target: Target) => Effect.Effect<A, E, R>
): Effect.Effect<A, unknown, Exclude<R, StateBackend.StateBackend>> =>
  Effect.flatMap(cli.target, (target) =>
    Effect.gen(function*() {
      const backend = yield* StateBackend.StateBackend
      const result = yield* f(backend, target)
      yield* backend.awaitRetention
      return result
    }).pipe(Effect.provide(backendLayer(target, cli.progress))))

/**
 * The optional `[workspace]` argument shared by the lock, versions and state commands.
 *
 * @internal
 */
export const workspaceArg = Args.text({ name: "workspace" }).pipe(
  Args.withDescription("Workspace (default: default)"),
  Args.optional
)

/**
 * A workspace argument: the default workspace when absent; anything that looks like an option is
 * a usage error rather than a workspace name.
 *
 * @since 0.1.0
 * @category utils
 */
export const workspaceOf = (arg: Option.Option<string>): Effect.Effect<string, UsageError> => {
  const name = Option.getOrElse(arg, () => "default")
  return name.startsWith("-")
    ? Effect.fail(new UsageError({ message: `unknown option ${JSON.stringify(name)} (or a workspace name starting with "-")` }))
    : Effect.succeed(name)
}

/**
 * What a lone `-` argument (stdin/stdout) becomes before parsing. The parser of `@effect/cli`
 * stops looking for options after an argument that starts with `-` and is no option, so
 * `state push - prod --force` would lose `--force`; argv strings cannot contain NUL, so this
 * stand-in never collides with a real argument.
 *
 * @since 0.1.0
 * @category constants
 */
export const dashArgument = "\u0000-"

/**
 * Whether a file argument means stdin/stdout.
 *
 * @since 0.1.0
 * @category utils
 */
export const isDash = (arg: string): boolean => arg === "-" || arg === dashArgument

/**
 * The handler of a command group run without a subcommand.
 *
 * @since 0.1.0
 * @category utils
 */
export const missingSubcommand = (group: string, subcommands: ReadonlyArray<string>): Effect.Effect<never, UsageError> =>
  Effect.fail(
    new UsageError({
      message: group === "oras-state"
        ? `missing command, one of ${subcommands.join(", ")} (see oras-state --help)`
        : `${group}: missing subcommand, one of ${subcommands.join(", ")} (see oras-state ${group} --help)`
    })
  )

/**
 * The LockInfo of a lock this CLI takes, as Terraform fills it.
 *
 * @since 0.1.0
 * @category constructors
 */
export const cliLockInfo = (operation: string, path: string): Effect.Effect<LockInfo.LockInfo> =>
  Effect.map(DateTime.now, (now) =>
    LockInfo.make({
      Operation: operation,
      Who: whoAmI(),
      Version: `oras-state ${VERSION}`,
      Created: DateTime.formatIso(now),
      Path: path
    }))

const whoAmI = (): string => {
  let user = process.env["USER"] ?? "unknown"
  try {
    user = Os.userInfo().username
  } catch {
    // no passwd entry (containers): keep $USER
  }
  return `${user}@${Os.hostname()}`
}

/**
 * Write to stdout, waiting for the write to be handed over (back-pressure on pipes).
 *
 * @since 0.1.0
 * @category output
 */
export const writeStdout = (data: string | Uint8Array): Effect.Effect<void> =>
  Effect.async<void>((resume) => {
    process.stdout.write(data, () => resume(Effect.void))
  })

/**
 * @since 0.1.0
 * @category output
 */
export const writeStderr = (data: string): Effect.Effect<void> =>
  Effect.async<void>((resume) => {
    process.stderr.write(data, () => resume(Effect.void))
  })

/**
 * @since 0.1.0
 * @category output
 */
export const jsonText = (value: unknown): string => `${JSON.stringify(value, null, 2)}\n`

const printOutcome = (cli: Cli, outcome: Outcome) => {
  if (cli.json) return writeStdout(jsonText(outcome.json))
  if (outcome.raw !== undefined) return writeStdout(outcome.raw)
  if (outcome.human !== undefined && outcome.human !== "") {
    return writeStdout(outcome.human.endsWith("\n") ? outcome.human : `${outcome.human}\n`)
  }
  return Effect.void
}

/**
 * Report a failure: one line on stderr, a JSON document under `--json`; returns the exit code.
 *
 * @since 0.1.0
 * @category output
 */
export const reportFailure = (json: boolean, error: unknown): Effect.Effect<number> =>
  Effect.gen(function*() {
    const tag = tagOf(error)
    const message = messageOf(error)
    const exitCode = exitCodeOf(error)
    yield* writeStderr(`oras-state: ${tag}: ${message}\n`)
    if (json) {
      const lock = tag === "LockConflict" ? { lock: (error as { readonly info: LockInfo.LockInfo }).info } : {}
      yield* writeStdout(jsonText({ error: { tag, message, exitCode, ...lock } }))
    }
    return exitCode
  })

/**
 * Run a command handler with the merged global options: print its outcome or report its failure,
 * and record the exit code.
 *
 * @since 0.1.0
 * @category combinators
 */
export const runCommand = <R>(
  input: GlobalInput,
  body: (cli: Cli) => Effect.Effect<Outcome, unknown, R>
) =>
  Effect.gen(function*() {
    const root = yield* rootCommand
    const options = mergeGlobals(root, input)
    const status = yield* ExitStatus
    const json = options.json
    const cli: Cli = {
      options,
      json,
      progress: {
        enabled: options.progress || process.stderr.isTTY === true,
        tty: process.stderr.isTTY === true
      },
      target: resolveTarget(options)
    }
    const exit = yield* Effect.exit(body(cli))
    if (Exit.isSuccess(exit)) {
      yield* printOutcome(cli, exit.value)
      if (exit.value.error !== undefined) {
        yield* writeStderr(`oras-state: ${tagOf(exit.value.error)}: ${messageOf(exit.value.error)}\n`)
      }
      yield* Ref.set(status, exit.value.exitCode ?? ExitCode.ok)
      return
    }
    if (Cause.isInterruptedOnly(exit.cause)) {
      yield* Ref.set(status, ExitCode.interrupted)
      return
    }
    const failure = Cause.failureOption(exit.cause)
    if (Option.isSome(failure)) {
      yield* Ref.set(status, yield* reportFailure(json, failure.value))
      return
    }
    // A defect is a bug: say so, with the details.
    yield* writeStderr(`oras-state: internal error (a bug): ${Cause.pretty(exit.cause)}\n`)
    if (json) yield* writeStdout(jsonText({ error: { tag: "InternalError", message: "internal error", exitCode: 1 } }))
    yield* Ref.set(status, ExitCode.failure)
  })
