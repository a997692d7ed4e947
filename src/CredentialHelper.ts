/**
 * Docker credential helpers (`docker-credential-<name>`), run and cached.
 *
 * Protocol (docker-credential-helpers): the program is found on `PATH` and run with the single
 * argument `get`; the server URL is written to its stdin (no newline); on success it prints
 * `{"ServerURL": …, "Username": …, "Secret": …}` and exits 0. `Username` `"<token>"` means `Secret`
 * is an identity (OAuth2 refresh) token. On failure it prints a message on stdout and exits 1; the
 * message `credentials not found in native keychain` means "no credentials" and is not an error.
 *
 * Here:
 * - "not found" gives `None`; every other failure (program missing, non-zero exit, killed, output
 *   that is not that JSON, more than 64 KiB of output, no answer within the timeout — default
 *   30 s, after which the helper's process group is killed) is a `CredentialsError`. The helper's
 *   output never reaches an error, a log or a span: it may hold the secret.
 * - Results are cached on `Clock` per (helper, server URL): answers, "not found" included, for
 *   `successTimeToLive` (default 5 minutes); failures only for `errorTimeToLive` (default
 *   10 seconds), so a helper that crashed once is retried soon but not on every request.
 *   Concurrent lookups of one key share one process.
 *
 * @since 0.1.0
 */
import * as Command from "@effect/platform/Command"
import * as CommandExecutor from "@effect/platform/CommandExecutor"
import type * as PlatformError from "@effect/platform/Error"
import * as NodeCommandExecutor from "@effect/platform-node/NodeCommandExecutor"
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as FiberId from "effect/FiberId"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type { Credential } from "./Credentials.js"
import { CredentialsError } from "./Errors.js"
import { isValidHelperName } from "./internal/credentials/registryKey.js"

/**
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** Time a helper may take to answer (default 30 seconds); then it is killed. */
  readonly timeout?: Duration.DurationInput | undefined
  /** How long an answer (credentials or "not found") is reused (default 5 minutes). */
  readonly successTimeToLive?: Duration.DurationInput | undefined
  /** How long a failure is reused before the helper is run again (default 10 seconds). */
  readonly errorTimeToLive?: Duration.DurationInput | undefined
  /**
   * `PATH` the helper program is looked up in (and that it runs with). By default the helper
   * inherits this process's environment, as docker does.
   */
  readonly path?: string | undefined
  /** Cached (helper, server URL) entries (default 256). */
  readonly capacity?: number | undefined
}

/**
 * @since 0.1.0
 * @category constants
 */
export const defaults = {
  timeout: Duration.seconds(30),
  successTimeToLive: Duration.minutes(5),
  errorTimeToLive: Duration.seconds(10),
  capacity: 256
} as const

/**
 * @since 0.1.0
 * @category models
 */
export interface Service {
  /**
   * The credential helper `docker-credential-<helper>` holds for `serverUrl` (`None` when it has
   * none).
   */
  readonly get: (helper: string, serverUrl: string) => Effect.Effect<Option.Option<Credential>, CredentialsError>
}

/**
 * @since 0.1.0
 * @category tags
 */
export class CredentialHelpers extends Context.Tag("oras-state/CredentialHelpers")<CredentialHelpers, Service>() {}

/** The helper's message for "no credentials", compared after trimming. */
const notFoundMessage = "credentials not found in native keychain"
const maxOutputBytes = 64 * 1024

/**
 * The `source` named in errors: the program name.
 *
 * @since 0.1.0
 * @category utils
 */
export const programName = (helper: string): string => `docker-credential-${helper}`

interface Captured {
  readonly bytes: Uint8Array
  readonly overflow: boolean
}

// Keeps at most `maxOutputBytes` but drains everything, so a chatty helper never blocks on a pipe.
const capture = (stream: Stream.Stream<Uint8Array, PlatformError.PlatformError>) =>
  Stream.runFold(stream, { chunks: [] as Array<Uint8Array>, size: 0, overflow: false }, (acc, chunk) => {
    if (acc.size + chunk.byteLength > maxOutputBytes) acc.overflow = true
    else {
      acc.chunks.push(chunk)
      acc.size += chunk.byteLength
    }
    return acc
  }).pipe(Effect.map((acc): Captured => ({ bytes: Buffer.concat(acc.chunks), overflow: acc.overflow })))

/**
 * Decode a helper's successful output. The reason never quotes the output.
 *
 * @since 0.1.0
 * @category parsers
 */
export const parseOutput = (text: string): { readonly _tag: "Ok"; readonly credential: Option.Option<Credential> } | {
  readonly _tag: "Malformed"
  readonly reason: string
} => {
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch {
    return { _tag: "Malformed", reason: "printed output that is not JSON" }
  }
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    return { _tag: "Malformed", reason: "printed JSON that is not an object" }
  }
  const record = json as Record<string, unknown>
  const username = record["Username"] ?? ""
  const secret = record["Secret"]
  if (typeof username !== "string" || typeof secret !== "string") {
    return { _tag: "Malformed", reason: "printed JSON without string Username and Secret fields" }
  }
  if (secret.length === 0) return { _tag: "Ok", credential: Option.none() }
  if (username === "<token>") {
    return { _tag: "Ok", credential: Option.some({ _tag: "RefreshToken", token: Redacted.make(secret) }) }
  }
  if (username.length === 0) {
    return { _tag: "Malformed", reason: "printed a Secret with an empty Username" }
  }
  return { _tag: "Ok", credential: Option.some({ _tag: "Basic", username, password: Redacted.make(secret) }) }
}

/**
 * Run `docker-credential-<helper> get` once for `serverUrl`, without caching.
 *
 * @since 0.1.0
 * @category constructors
 */
export const run = (
  helper: string,
  serverUrl: string,
  options: { readonly timeout?: Duration.DurationInput | undefined; readonly path?: string | undefined } = {}
): Effect.Effect<Option.Option<Credential>, CredentialsError, CommandExecutor.CommandExecutor> => {
  const program = programName(helper)
  const fail = (reason: string) => new CredentialsError({ host: serverUrl, source: program, reason })
  if (!isValidHelperName(helper)) {
    return Effect.fail(
      new CredentialsError({
        host: serverUrl,
        source: "credential helper configuration",
        reason: "a helper name must be a plain name ([A-Za-z0-9._-]), not a path"
      })
    )
  }
  const timeout = Duration.decode(options.timeout ?? defaults.timeout)
  const command = Command.make(program, "get").pipe(
    Command.feed(serverUrl),
    (c) => (options.path === undefined ? c : Command.env(c, { PATH: options.path }))
  )
  const spawnFailure = (error: PlatformError.PlatformError) =>
    fail(
      error._tag === "SystemError" && error.reason === "NotFound"
        ? "the program is not on PATH"
        : error._tag === "SystemError" && error.reason === "PermissionDenied"
        ? "the program is not executable"
        : "the program could not be started"
    )
  return Effect.scoped(
    Effect.gen(function*() {
      const child = yield* Effect.mapError(Command.start(command), spawnFailure)
      const outcome = yield* Effect.all(
        [
          capture(child.stdout),
          capture(child.stderr),
          Effect.either(child.exitCode)
        ],
        { concurrency: "unbounded" }
      ).pipe(
        Effect.mapError(() => fail("its output could not be read")),
        Effect.timeoutFail({
          duration: timeout,
          onTimeout: () => fail(`did not answer within ${Duration.format(timeout)}`)
        }),
        // A helper that ignores SIGTERM must not keep us waiting: kill its process group for good.
        // A failure to kill means the process is already gone, which is what we want.
        Effect.tapError(() => child.kill("SIGKILL").pipe(Effect.catchAll(() => Effect.void)))
      )
      const [stdout, stderr, exit] = outcome
      if (exit._tag === "Left") return yield* fail("it was killed by a signal")
      const out = new TextDecoder().decode(stdout.bytes).trim()
      if (exit.right !== 0) {
        const err = new TextDecoder().decode(stderr.bytes).trim()
        if (exit.right === 1 && (out === notFoundMessage || (out === "" && err === notFoundMessage))) {
          return Option.none<Credential>()
        }
        // The output is withheld on purpose: a half-written answer may hold the secret.
        return yield* fail(`it exited with code ${exit.right} (its output is not shown, as it may hold secrets)`)
      }
      if (stdout.overflow) return yield* fail(`it printed more than ${maxOutputBytes} bytes`)
      const parsed = parseOutput(out)
      if (parsed._tag === "Malformed") return yield* fail(parsed.reason)
      return parsed.credential
    })
  ).pipe(Effect.withSpan("CredentialHelper.run", { attributes: { helper: program, serverUrl } }))
}

/**
 * The cached service (see the module header). Each helper run belongs to the service's scope,
 * not to the fiber that asked first, so a caller that is interrupted stops waiting without
 * cancelling the run the other callers share.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  options: Options = {}
): Effect.Effect<Service, never, CommandExecutor.CommandExecutor | Scope.Scope> =>
  Effect.gen(function*() {
    const executor = yield* CommandExecutor.CommandExecutor
    const scope = yield* Effect.scope
    const successTtl = Duration.toMillis(Duration.decode(options.successTimeToLive ?? defaults.successTimeToLive))
    const errorTtl = Duration.toMillis(Duration.decode(options.errorTimeToLive ?? defaults.errorTimeToLive))
    const capacity = Math.max(1, Math.floor(options.capacity ?? defaults.capacity))
    const runOptions = { timeout: options.timeout, path: options.path }

    interface Entry {
      readonly deferred: Deferred.Deferred<Option.Option<Credential>, CredentialsError>
      /** `Infinity` while the helper runs. */
      expiresAt: number
    }
    // Insertion-ordered, so the first entries are the oldest when trimming to capacity.
    const entries = new Map<string, Entry>()

    const start = (key: string, helper: string, serverUrl: string, entry: Entry) =>
      run(helper, serverUrl, runOptions).pipe(
        Effect.provideService(CommandExecutor.CommandExecutor, executor),
        Effect.onExit((exit) =>
          Effect.flatMap(Clock.currentTimeMillis, (now) =>
            Effect.sync(() => {
              if (Exit.isInterrupted(exit)) {
                if (entries.get(key) === entry) entries.delete(key)
              } else {
                entry.expiresAt = now + (Exit.isSuccess(exit) ? successTtl : errorTtl)
              }
            }))
        ),
        Effect.intoDeferred(entry.deferred),
        Effect.forkIn(scope)
      )

    const get: Service["get"] = (helper, serverUrl) =>
      Effect.gen(function*() {
        const key = JSON.stringify([helper, serverUrl])
        const now = yield* Clock.currentTimeMillis
        // Check and insert in one step, so that concurrent callers find the same entry.
        const [entry, fresh] = yield* Effect.sync(() => {
          const current = entries.get(key)
          if (current !== undefined && current.expiresAt > now) return [current, false] as const
          const created: Entry = {
            deferred: Deferred.unsafeMake<Option.Option<Credential>, CredentialsError>(FiberId.none),
            expiresAt: Number.POSITIVE_INFINITY
          }
          entries.delete(key)
          entries.set(key, created)
          for (const oldest of entries.keys()) {
            if (entries.size <= capacity) break
            entries.delete(oldest)
          }
          return [created, true] as const
        })
        if (fresh) yield* start(key, helper, serverUrl, entry)
        return yield* Deferred.await(entry.deferred)
      })

    return CredentialHelpers.of({ get })
  })

/**
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: Options = {}): Layer.Layer<CredentialHelpers, never, CommandExecutor.CommandExecutor> =>
  Layer.scoped(CredentialHelpers, make(options))

/**
 * `layer` on Node's process spawning.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerNode = (options: Options = {}): Layer.Layer<CredentialHelpers> =>
  layer(options).pipe(Layer.provide(NodeCommandExecutor.layer), Layer.provide(NodeFileSystem.layer))
