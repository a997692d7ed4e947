/**
 * Ambient credentials: the docker `config.json` and containers `auth.json` files that docker,
 * podman, skopeo, buildah, oras and OpenTofu already read, so that a registry a user reaches from
 * those tools needs no new configuration here.
 *
 * Sources, in this order (earlier wins a tie, see below):
 * 1. `DOCKER_AUTH_CONFIG`: a whole config JSON in the environment (CI systems set it);
 * 2. `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`;
 * 3. `$REGISTRY_AUTH_FILE`;
 * 4. `$XDG_RUNTIME_DIR/containers/auth.json`;
 * 5. `${XDG_CONFIG_HOME:-~/.config}/containers/auth.json`.
 * A missing file is skipped; an unreadable or malformed one fails every lookup with a
 * `CredentialsError` naming the file (the error never quotes the file's content). With
 * `options.files`, exactly those files are read, and a missing one is an error too.
 *
 * In each file:
 * - `auths["host[/path]"]` entries: `registrytoken` (a bearer token, → `AccessToken`), else
 *   `identitytoken` (an OAuth2 refresh token, → `RefreshToken`), else `auth` (std-base64
 *   `user:password`, → `Basic`), else `username` + `password` (→ `Basic`). Entries with none of
 *   these (docker writes `{}` when a `credsStore` holds the secret) are not candidates.
 * - `credHelpers["host"]`: the helper `docker-credential-<name>` for that registry.
 * - `credsStore`: the helper for every registry.
 * Keys are normalised: the scheme, trailing `/` and a final `/v1` or `/v2` are stripped, the host
 * is lowercased, and Docker Hub's names (`docker.io`, `index.docker.io`, `registry-1.docker.io`,
 * legacy `https://index.docker.io/v1/`) are one registry.
 *
 * Choosing: every entry that matches the registry and a prefix of the repository is a candidate,
 * with OpenTofu's specificity — `host/a/b` (4) > `host/a` (3) > `host` (2, `auths` or
 * `credHelpers`) > `credsStore` (1). The most specific candidate wins; on a tie the earlier source
 * wins, and within one file `credHelpers[host]` wins over `auths[host]`. The winner alone decides:
 * a helper that answers "not found" means anonymous access, not a fall-back to a weaker entry.
 * Helpers are asked with the server URL `https://index.docker.io/v1/` for Docker Hub, else the bare
 * `host[:port]`.
 *
 * The files are re-read at most every `reloadAfter` (default 10 seconds, on `Clock`), so a
 * `docker login` during a long-running process is picked up.
 *
 * Environment variables are read through Effect's `Config` (the default provider is the process
 * environment), unless `options.env` is given, which then replaces the environment entirely.
 *
 * @since 0.1.0
 */
import type * as PlatformError from "@effect/platform/Error"
import * as FileSystem from "@effect/platform/FileSystem"
import type * as ConfigError from "effect/ConfigError"
import * as Config from "effect/Config"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import * as ParseResult from "effect/ParseResult"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import * as Os from "node:os"
import * as NodePath from "node:path"
import { CredentialHelpers } from "./CredentialHelper.js"
import type { Credential, Service as CredentialsService } from "./Credentials.js"
import { CredentialsError } from "./Errors.js"
import {
  canonicalHost,
  dockerHubLegacyKey,
  formatKey,
  globalSpecificity,
  helperServerUrl,
  parseKey,
  type RegistryKey,
  repositorySegments,
  specificity
} from "./internal/credentials/registryKey.js"

/**
 * The environment variables consulted.
 *
 * @since 0.1.0
 * @category models
 */
export type EnvName =
  | "DOCKER_AUTH_CONFIG"
  | "DOCKER_CONFIG"
  | "REGISTRY_AUTH_FILE"
  | "XDG_RUNTIME_DIR"
  | "XDG_CONFIG_HOME"
  | "HOME"

/**
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /**
   * Replaces the process environment (read through `Config` otherwise). Without `HOME`, the
   * home directory is `os.homedir()`.
   */
  readonly env?: Readonly<Partial<Record<EnvName, string | undefined>>> | undefined
  /** Read exactly these files instead of discovering them (OpenTofu `docker_style_config_files`). */
  readonly files?: ReadonlyArray<string> | undefined
  /** Re-read the files at most this often (default 10 seconds). */
  readonly reloadAfter?: Duration.DurationInput | undefined
}

/**
 * Where a config comes from.
 *
 * @since 0.1.0
 * @category models
 */
export type Location =
  | { readonly _tag: "Env"; readonly name: "DOCKER_AUTH_CONFIG"; readonly text: Redacted.Redacted<string> }
  | { readonly _tag: "File"; readonly path: string; readonly required: boolean }

/**
 * One `auths` entry; every secret is `Redacted`.
 *
 * @since 0.1.0
 * @category models
 */
export interface AuthEntry {
  readonly auth?: Redacted.Redacted<string> | undefined
  readonly username?: string | undefined
  readonly password?: Redacted.Redacted<string> | undefined
  readonly identitytoken?: Redacted.Redacted<string> | undefined
  readonly registrytoken?: Redacted.Redacted<string> | undefined
}

/**
 * A parsed config file.
 *
 * @since 0.1.0
 * @category models
 */
export interface ConfigFile {
  /** The file path, or `DOCKER_AUTH_CONFIG`. */
  readonly origin: string
  readonly auths: ReadonlyArray<{ readonly rawKey: string; readonly key: RegistryKey; readonly entry: AuthEntry }>
  readonly credHelpers: ReadonlyArray<{ readonly rawKey: string; readonly key: RegistryKey; readonly helper: string }>
  readonly credsStore: string | undefined
}

const optionalString = Schema.optionalWith(Schema.String, { nullable: true })
const optionalSecret = Schema.optionalWith(Schema.Redacted(Schema.String), { nullable: true })

const AuthEntrySchema = Schema.Struct({
  auth: optionalSecret,
  username: optionalString,
  password: optionalSecret,
  identitytoken: optionalSecret,
  registrytoken: optionalSecret
})

const ConfigFileSchema = Schema.Struct({
  auths: Schema.optionalWith(Schema.Record({ key: Schema.String, value: Schema.NullOr(AuthEntrySchema) }), {
    nullable: true
  }),
  credHelpers: Schema.optionalWith(Schema.Record({ key: Schema.String, value: Schema.String }), { nullable: true }),
  credsStore: optionalString
})

const decodeConfigFile = Schema.decodeUnknownEither(ConfigFileSchema)

// Only the path of the first problem: ParseResult messages quote the offending value.
const describeIssue = (error: ParseResult.ParseError): string => {
  let issue: ParseResult.ArrayFormatterIssue | undefined
  try {
    issue = ParseResult.ArrayFormatter.formatErrorSync(error)[0]
  } catch {
    // Formatting recurses into the offending value: one nested thousands deep overflows the stack.
    return "a value of the wrong type"
  }
  const path = issue === undefined || issue.path.length === 0
    ? "the top level"
    : issue.path.map((p) => (typeof p === "string" ? JSON.stringify(p) : String(p))).join(".")
  return `a value of the wrong type at ${path}`
}

/**
 * Parse a config file's text. The failure reason never quotes the text.
 *
 * @since 0.1.0
 * @category parsers
 */
export const parse = (text: string, origin: string): Either.Either<ConfigFile, string> => {
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch {
    return Either.left("not valid JSON")
  }
  if (typeof json !== "object" || json === null || Array.isArray(json)) return Either.left("not a JSON object")
  return Either.match(decodeConfigFile(json), {
    onLeft: (error) => Either.left(describeIssue(error)),
    onRight: (decoded) => {
      const auths: Array<ConfigFile["auths"][number]> = []
      for (const [rawKey, entry] of Object.entries(decoded.auths ?? {})) {
        const key = parseKey(rawKey)
        if (key !== undefined && entry !== null) auths.push({ rawKey, key, entry })
      }
      // The canonical spelling of a key wins over a legacy spelling of the same registry.
      auths.sort((a, b) => keyRank(a.rawKey, a.key) - keyRank(b.rawKey, b.key))
      const credHelpers: Array<ConfigFile["credHelpers"][number]> = []
      for (const [rawKey, helper] of Object.entries(decoded.credHelpers ?? {})) {
        const key = parseKey(rawKey)
        if (key !== undefined && helper.trim() !== "") credHelpers.push({ rawKey, key, helper: helper.trim() })
      }
      credHelpers.sort((a, b) => keyRank(a.rawKey, a.key) - keyRank(b.rawKey, b.key))
      const credsStore = decoded.credsStore?.trim()
      return Either.right({
        origin,
        auths,
        credHelpers,
        credsStore: credsStore === undefined || credsStore === "" ? undefined : credsStore
      })
    }
  })
}

const keyRank = (rawKey: string, key: RegistryKey): number => {
  const raw = rawKey.trim()
  return raw === formatKey(key) || (key.host === "docker.io" && raw === dockerHubLegacyKey) ? 0 : 1
}

const hasCredential = (entry: AuthEntry): boolean =>
  [entry.registrytoken, entry.identitytoken, entry.auth].some((s) => s !== undefined && Redacted.value(s) !== "") ||
  (entry.username !== undefined && entry.username !== "" && entry.password !== undefined)

const decodeAuth = (auth: Redacted.Redacted<string>): Either.Either<{ username: string; password: string }, string> => {
  const text = Redacted.value(auth).replace(/\s+/g, "")
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(text) || text.length % 4 === 1) {
    return Either.left("the auth field is not base64")
  }
  const decoded = Buffer.from(text, "base64").toString("utf8")
  const colon = decoded.indexOf(":")
  if (colon < 0) return Either.left("the auth field is not base64 of user:password")
  const username = withoutTrailingNuls(decoded.slice(0, colon))
  const password = withoutTrailingNuls(decoded.slice(colon + 1))
  if (username === "") return Either.left("the auth field has an empty user name")
  return Either.right({ username, password })
}

// Linear (`/\0+$/` backtracks quadratically on a long run of NULs followed by something else).
const withoutTrailingNuls = (s: string): string => {
  let end = s.length
  while (end > 0 && s[end - 1] === "\0") end--
  return s.slice(0, end)
}

/**
 * The credential an `auths` entry holds (`Left` with a reason that quotes nothing of it).
 *
 * @since 0.1.0
 * @category utils
 */
export const entryCredential = (entry: AuthEntry): Either.Either<Option.Option<Credential>, string> => {
  const nonEmpty = (s: Redacted.Redacted<string> | undefined): s is Redacted.Redacted<string> =>
    s !== undefined && Redacted.value(s) !== ""
  if (nonEmpty(entry.registrytoken)) {
    return Either.right(Option.some({ _tag: "AccessToken", token: entry.registrytoken }))
  }
  if (nonEmpty(entry.identitytoken)) {
    const fromAuth = nonEmpty(entry.auth) ? Either.getOrUndefined(decodeAuth(entry.auth))?.username : undefined
    const username = fromAuth ?? (entry.username === "" ? undefined : entry.username)
    return Either.right(Option.some({ _tag: "RefreshToken", token: entry.identitytoken, username }))
  }
  if (nonEmpty(entry.auth)) {
    return Either.map(decodeAuth(entry.auth), ({ password, username }) =>
      Option.some<Credential>({ _tag: "Basic", username, password: Redacted.make(password) }))
  }
  if (entry.username !== undefined && entry.username !== "" && entry.password !== undefined) {
    return Either.right(Option.some({ _tag: "Basic", username: entry.username, password: entry.password }))
  }
  return Either.right(Option.none())
}

/**
 * Where the configs are, from the environment (`Config`) or `options.env`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const locate = (options: Options = {}): Effect.Effect<ReadonlyArray<Location>, ConfigError.ConfigError> =>
  Effect.gen(function*() {
    const env = options.env === undefined ? yield* readEnv : fromRecord(options.env)
    const locations: Array<Location> = []
    if (Option.isSome(env.DOCKER_AUTH_CONFIG)) {
      locations.push({ _tag: "Env", name: "DOCKER_AUTH_CONFIG", text: env.DOCKER_AUTH_CONFIG.value })
    }
    if (options.files !== undefined) {
      for (const path of options.files) locations.push({ _tag: "File", path, required: true })
      return dedupe(locations)
    }
    const home = Option.getOrElse(env.HOME, () => Os.homedir())
    const file = (path: string): Location => ({ _tag: "File", path, required: false })
    locations.push(
      file(Option.match(env.DOCKER_CONFIG, {
        onNone: () => NodePath.join(home, ".docker", "config.json"),
        onSome: (dir) => NodePath.join(dir, "config.json")
      }))
    )
    if (Option.isSome(env.REGISTRY_AUTH_FILE)) locations.push(file(env.REGISTRY_AUTH_FILE.value))
    if (Option.isSome(env.XDG_RUNTIME_DIR)) {
      locations.push(file(NodePath.join(env.XDG_RUNTIME_DIR.value, "containers", "auth.json")))
    }
    const configHome = Option.getOrElse(env.XDG_CONFIG_HOME, () => NodePath.join(home, ".config"))
    locations.push(file(NodePath.join(configHome, "containers", "auth.json")))
    return dedupe(locations)
  })

interface Env {
  readonly DOCKER_AUTH_CONFIG: Option.Option<Redacted.Redacted<string>>
  readonly DOCKER_CONFIG: Option.Option<string>
  readonly REGISTRY_AUTH_FILE: Option.Option<string>
  readonly XDG_RUNTIME_DIR: Option.Option<string>
  readonly XDG_CONFIG_HOME: Option.Option<string>
  readonly HOME: Option.Option<string>
}

const setting = (name: EnvName) =>
  Config.option(Config.string(name)).pipe(Config.map(Option.filter((s) => s.trim() !== "")))

const readEnv: Effect.Effect<Env, ConfigError.ConfigError> = Config.all({
  DOCKER_AUTH_CONFIG: Config.option(Config.redacted("DOCKER_AUTH_CONFIG")).pipe(
    Config.map(Option.filter((s) => Redacted.value(s).trim() !== ""))
  ),
  DOCKER_CONFIG: setting("DOCKER_CONFIG"),
  REGISTRY_AUTH_FILE: setting("REGISTRY_AUTH_FILE"),
  XDG_RUNTIME_DIR: setting("XDG_RUNTIME_DIR"),
  XDG_CONFIG_HOME: setting("XDG_CONFIG_HOME"),
  HOME: setting("HOME")
})

const fromRecord = (env: Readonly<Partial<Record<EnvName, string | undefined>>>): Env => {
  const get = (name: EnvName) => Option.fromNullable(env[name]).pipe(Option.filter((s) => s.trim() !== ""))
  return {
    DOCKER_AUTH_CONFIG: Option.map(get("DOCKER_AUTH_CONFIG"), Redacted.make),
    DOCKER_CONFIG: get("DOCKER_CONFIG"),
    REGISTRY_AUTH_FILE: get("REGISTRY_AUTH_FILE"),
    XDG_RUNTIME_DIR: get("XDG_RUNTIME_DIR"),
    XDG_CONFIG_HOME: get("XDG_CONFIG_HOME"),
    HOME: get("HOME")
  }
}

const dedupe = (locations: ReadonlyArray<Location>): ReadonlyArray<Location> => {
  const seen = new Set<string>()
  return locations.filter((l) => {
    if (l._tag === "Env") return true
    const key = NodePath.resolve(l.path)
    if (seen.has(key)) return false
    seen.add(key)
    return true
  })
}

/**
 * A config that could not be used: reported on every lookup.
 *
 * @since 0.1.0
 * @category models
 */
export interface LoadFailure {
  readonly origin: string
  readonly reason: string
}

const maxFileBytes = 4 * 1024 * 1024

/**
 * Read and parse every located config. Never fails: a broken file is a `LoadFailure` entry, so
 * that it is reported for the host being looked up.
 *
 * @since 0.1.0
 * @category constructors
 */
export const load = (
  locations: ReadonlyArray<Location>
): Effect.Effect<ReadonlyArray<Either.Either<ConfigFile, LoadFailure>>, never, FileSystem.FileSystem> =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    const results: Array<Either.Either<ConfigFile, LoadFailure>> = []
    for (const location of locations) {
      if (location._tag === "Env") {
        results.push(Either.mapLeft(parse(Redacted.value(location.text), location.name), (reason) => ({
          origin: location.name,
          reason
        })))
        continue
      }
      const origin = location.path
      const read = yield* readFile(fs, location.path, location.required)
      if (read._tag === "Missing") continue
      if (read._tag === "Failed") {
        results.push(Either.left({ origin, reason: read.reason }))
        continue
      }
      results.push(Either.mapLeft(parse(read.text, origin), (reason) => ({ origin, reason })))
    }
    return results
  })

type ReadResult =
  | { readonly _tag: "Text"; readonly text: string }
  | { readonly _tag: "Missing" }
  | { readonly _tag: "Failed"; readonly reason: string }

const readFile = (fs: FileSystem.FileSystem, path: string, required: boolean): Effect.Effect<ReadResult> => {
  const failed = (reason: string): ReadResult => ({ _tag: "Failed", reason })
  return fs.stat(path).pipe(
    Effect.flatMap((info): Effect.Effect<ReadResult, PlatformError.PlatformError> =>
      info.type !== "File"
        ? Effect.succeed(failed("not a regular file"))
        : Number(info.size) > maxFileBytes
        ? Effect.succeed(failed(`larger than ${maxFileBytes} bytes`))
        : Effect.map(fs.readFileString(path), (text): ReadResult => ({ _tag: "Text", text }))
    ),
    Effect.catchTags({
      SystemError: (error) =>
        Effect.succeed<ReadResult>(
          error.reason === "NotFound"
            ? (required ? failed("the file does not exist") : { _tag: "Missing" })
            : failed(`the file cannot be read (${error.reason})`)
        ),
      BadArgument: () => Effect.succeed(failed("the file cannot be read (bad path)"))
    })
  )
}

/**
 * A matching entry: inline credentials from `auths`, or a helper (`credHelpers` / `credsStore`).
 *
 * @since 0.1.0
 * @category models
 */
export type Candidate =
  | { readonly _tag: "Entry"; readonly specificity: number; readonly source: string; readonly entry: AuthEntry }
  | { readonly _tag: "Helper"; readonly specificity: number; readonly helper: string }

/**
 * The winning candidate for `host` / `repository` across `files` (see the module header).
 *
 * @since 0.1.0
 * @category utils
 */
export const select = (
  files: ReadonlyArray<ConfigFile>,
  host: string,
  repository: string
): Option.Option<Candidate> => {
  const h = canonicalHost(host)
  const segments = repositorySegments(repository)
  let best: Candidate | undefined
  const consider = (candidate: Candidate) => {
    // Strictly greater: on a tie the earlier candidate stays.
    if (best === undefined || candidate.specificity > best.specificity) best = candidate
  }
  for (const file of files) {
    for (const { helper, key } of file.credHelpers) {
      const s = specificity(key, h, segments)
      if (s !== undefined) consider({ _tag: "Helper", specificity: s, helper })
    }
    for (const { entry, key, rawKey } of file.auths) {
      const s = specificity(key, h, segments)
      if (s !== undefined && hasCredential(entry)) {
        consider({ _tag: "Entry", specificity: s, source: `${file.origin} auths[${JSON.stringify(rawKey)}]`, entry })
      }
    }
    if (file.credsStore !== undefined) consider({ _tag: "Helper", specificity: globalSpecificity, helper: file.credsStore })
  }
  return Option.fromNullable(best)
}

/**
 * The `Credentials` service over the ambient files.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  options: Options = {}
): Effect.Effect<CredentialsService, ConfigError.ConfigError, FileSystem.FileSystem | CredentialHelpers> =>
  Effect.gen(function*() {
    const locations = yield* locate(options)
    const helpers = yield* CredentialHelpers
    const fs = yield* FileSystem.FileSystem
    const snapshot = yield* Effect.cachedWithTTL(
      Effect.provideService(load(locations), FileSystem.FileSystem, fs),
      Duration.decode(options.reloadAfter ?? Duration.seconds(10))
    )
    const get: CredentialsService["get"] = (host, repository) =>
      Effect.gen(function*() {
        const loaded = yield* snapshot
        const files: Array<ConfigFile> = []
        for (const result of loaded) {
          if (Either.isLeft(result)) {
            return yield* new CredentialsError({ host, source: result.left.origin, reason: result.left.reason })
          }
          files.push(result.right)
        }
        const chosen = select(files, host, repository)
        if (Option.isNone(chosen)) return Option.none()
        const candidate = chosen.value
        if (candidate._tag === "Helper") return yield* helpers.get(candidate.helper, helperServerUrl(host))
        return yield* Either.match(entryCredential(candidate.entry), {
          onLeft: (reason) => Effect.fail(new CredentialsError({ host, source: candidate.source, reason })),
          onRight: Effect.succeed
        })
      })
    return { get }
  })
