/**
 * `BackendConfig`: the OpenTofu "oras" backend keys, as a Schema, with the defaults the seed backend
 * documents, and `fromEnv` for the `TF_BACKEND_ORAS_*` variables. Every bad value becomes an
 * `InvalidConfig` naming the key and the value.
 *
 * | key | default | meaning |
 * |---|---|---|
 * | `repository` | required | `host[:port]/path` (an `http://` prefix asks for plain HTTP) |
 * | `insecure` | false | skip TLS verification (and allow plain HTTP to that host) |
 * | `ca_file` | — | PEM bundle added to the system roots |
 * | `retry_max` | 2 | retries of idempotent requests |
 * | `retry_wait_min` / `retry_wait_max` | 1 / 30 | backoff bounds, seconds |
 * | `compression` | `none` | `none` or `gzip` (case-insensitive) |
 * | `lock_ttl` | 0 | lease in seconds; 0 = locks never expire |
 * | `rate_limit` / `rate_limit_burst` | 0 / 0 | requests per second (0 = off) / bucket size (0 = 1) |
 * | `versioning { enabled, max_versions }` | false / 10 | history; `max_versions = 0` keeps all |
 * | `max_versions` (top level, ghoten G3) | — | > 0 turns versioning on with that retention |
 * | `max_state_size` | 256 MiB | bytes, decoded; 0 = default |
 *
 * @since 0.1.0
 */
import * as Config from "effect/Config"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import { InvalidConfig } from "./Errors.js"
import { isValidRepository } from "./internal/reference.js"

const NonNegativeInt = Schema.Number.pipe(Schema.int(), Schema.nonNegative())
const NonNegative = Schema.Number.pipe(Schema.finite(), Schema.nonNegative())

const Compression = Schema.transform(Schema.String, Schema.Literal("none", "gzip"), {
  strict: false,
  decode: (s) => s.trim().toLowerCase(),
  encode: (s) => s
}).annotations({ message: () => "must be \"none\" or \"gzip\"" })

const Repository = Schema.String.pipe(
  Schema.filter((s) => parseRepository(s) !== undefined, {
    message: () => "must be <registry host[:port]>/<repository path>, lowercase, without tag or digest"
  })
)

/**
 * @since 0.1.0
 * @category schemas
 */
export const BackendConfig = Schema.Struct({
  repository: Repository,
  insecure: Schema.optionalWith(Schema.Boolean, { default: () => false }),
  ca_file: Schema.optional(Schema.String),
  retry_max: Schema.optionalWith(NonNegativeInt, { default: () => 2 }),
  retry_wait_min: Schema.optionalWith(NonNegative, { default: () => 1 }),
  retry_wait_max: Schema.optionalWith(NonNegative, { default: () => 30 }),
  compression: Schema.optionalWith(Compression, { default: () => "none" as const }),
  lock_ttl: Schema.optionalWith(NonNegative, { default: () => 0 }),
  rate_limit: Schema.optionalWith(NonNegative, { default: () => 0 }),
  rate_limit_burst: Schema.optionalWith(NonNegativeInt, { default: () => 0 }),
  versioning: Schema.optional(Schema.Struct({
    enabled: Schema.optionalWith(Schema.Boolean, { default: () => false }),
    max_versions: Schema.optionalWith(NonNegativeInt, { default: () => 10 })
  })),
  max_versions: Schema.optional(NonNegativeInt),
  max_state_size: Schema.optionalWith(NonNegativeInt, { default: () => 0 }),
  /** Library only: the User-Agent sent to registries. */
  user_agent: Schema.optional(Schema.String)
})

/**
 * @since 0.1.0
 * @category models
 */
export type BackendConfig = typeof BackendConfig.Type

/**
 * What a user may write (every key but `repository` optional).
 *
 * @since 0.1.0
 * @category models
 */
export type BackendConfigInput = typeof BackendConfig.Encoded

/**
 * `repository` split into the registry address and the repository path.
 *
 * @since 0.1.0
 * @category utils
 */
export const parseRepository = (
  value: string
): { readonly registry: string; readonly path: string; readonly plainHttp: boolean } | undefined => {
  const match = /^(?:(https?):\/\/)?([^/]+)\/(.+)$/.exec(value.trim())
  if (match === null) return undefined
  const scheme = match[1]
  const host = match[2] ?? ""
  const path = match[3] ?? ""
  if (!/^[A-Za-z0-9.-]+(:\d{1,5})?$/.test(host) && !/^\[[0-9a-fA-F:]+\](:\d{1,5})?$/.test(host)) return undefined
  if (!isValidRepository(path)) return undefined
  return { registry: scheme === undefined ? host : `${scheme}://${host}`, path, plainHttp: scheme === "http" }
}

/**
 * Decode a configuration object.
 *
 * @since 0.1.0
 * @category constructors
 */
export const decode = (input: unknown): Effect.Effect<BackendConfig, InvalidConfig> => {
  const result = Schema.decodeUnknownEither(BackendConfig, { errors: "first", onExcessProperty: "error" })(input)
  if (Either.isRight(result)) return Effect.succeed(result.right)
  const issue = firstIssue(result.left)
  const path = issue?.path.map(String) ?? []
  const key = path.join(".") || "config"
  return Effect.fail(
    new InvalidConfig({
      key,
      ...valueAt(input, path),
      reason: issue === undefined ? "invalid" : issue._tag === "Missing" ? "is required" : issue.message
    })
  )
}

// Formatting quotes the offending value recursively, which overflows the stack on values nested
// thousands deep: such a value gets no detail rather than a defect.
const firstIssue = (error: ParseResult.ParseError): ParseResult.ArrayFormatterIssue | undefined => {
  try {
    return ParseResult.ArrayFormatter.formatErrorSync(error)[0]
  } catch {
    return undefined
  }
}

const valueAt = (input: unknown, path: ReadonlyArray<string>): { value?: string } => {
  let current: unknown = input
  for (const key of path) {
    if (typeof current !== "object" || current === null) return {}
    current = (current as Record<string, unknown>)[key]
  }
  if (current === undefined) return {}
  return { value: typeof current === "string" ? withoutUserinfo(current) : display(current) }
}

// A value shown in an error loses a `user:password@` part (which does not belong in a repository
// address, but may hold a real password).
const withoutUserinfo = (value: string): string => {
  const lead = /^\s*(?:[a-z][a-z0-9+.-]*:\/\/)?/i.exec(value)![0]
  const rest = value.slice(lead.length)
  const at = rest.search(/[/@]/)
  return at >= 0 && rest[at] === "@" ? `${lead}<redacted>@${rest.slice(at + 1)}` : value
}

// Any value as text, never throwing (`decode` takes `unknown`: BigInts and cycles included).
const display = (value: unknown): string => {
  try {
    const json = JSON.stringify(value)
    if (json !== undefined) return json
  } catch {
    // BigInt, a cycle, a throwing toJSON: fall through
  }
  try {
    return String(value)
  } catch {
    return Object.prototype.toString.call(value)
  }
}

// Environment variable → key, and how the text is read.
const envKeys: ReadonlyArray<readonly [string, ReadonlyArray<string>, "string" | "number" | "boolean"]> = [
  ["REPOSITORY", ["repository"], "string"],
  ["INSECURE", ["insecure"], "boolean"],
  ["CA_FILE", ["ca_file"], "string"],
  ["RETRY_MAX", ["retry_max"], "number"],
  ["RETRY_WAIT_MIN", ["retry_wait_min"], "number"],
  ["RETRY_WAIT_MAX", ["retry_wait_max"], "number"],
  ["COMPRESSION", ["compression"], "string"],
  ["LOCK_TTL", ["lock_ttl"], "number"],
  ["RATE_LIMIT", ["rate_limit"], "number"],
  ["RATE_LIMIT_BURST", ["rate_limit_burst"], "number"],
  ["VERSIONING_ENABLED", ["versioning", "enabled"], "boolean"],
  ["VERSIONING_MAX_VERSIONS", ["versioning", "max_versions"], "number"],
  ["MAX_VERSIONS", ["max_versions"], "number"],
  ["MAX_STATE_SIZE", ["max_state_size"], "number"],
  ["USER_AGENT", ["user_agent"], "string"]
]

/**
 * Read the configuration from `TF_BACKEND_ORAS_*` (through Effect's `Config`, so any
 * `ConfigProvider` works), optionally over a base object that the variables override.
 *
 * @since 0.1.0
 * @category constructors
 */
export const fromEnv = (
  base: Partial<BackendConfigInput> = {}
): Effect.Effect<BackendConfig, InvalidConfig> =>
  Effect.gen(function*() {
    const input: Record<string, unknown> = structuredClone(base) as Record<string, unknown>
    for (const [name, path, kind] of envKeys) {
      const variable = `TF_BACKEND_ORAS_${name}`
      const raw = yield* Config.option(Config.string(variable)).pipe(
        Effect.mapError(() => new InvalidConfig({ key: variable, reason: "cannot be read" }))
      )
      if (raw._tag === "None") continue
      const value = yield* parseEnvValue(variable, raw.value, kind)
      let target = input
      for (const key of path.slice(0, -1)) {
        target[key] = typeof target[key] === "object" && target[key] !== null ? target[key] : {}
        target = target[key] as Record<string, unknown>
      }
      target[path[path.length - 1]!] = value
    }
    return yield* decode(input)
  })

const parseEnvValue = (variable: string, raw: string, kind: "string" | "number" | "boolean") => {
  const text = raw.trim()
  if (kind === "string") return Effect.succeed(raw)
  if (kind === "boolean") {
    if (/^(1|true|yes|on)$/i.test(text)) return Effect.succeed(true)
    if (/^(0|false|no|off)$/i.test(text)) return Effect.succeed(false)
    return Effect.fail(new InvalidConfig({ key: variable, value: raw, reason: "must be true or false" }))
  }
  const n = Number(text)
  return text !== "" && Number.isFinite(n)
    ? Effect.succeed(n)
    : Effect.fail(new InvalidConfig({ key: variable, value: raw, reason: "must be a number" }))
}

/**
 * The effective versioning: the `versioning` block wins; else a top-level `max_versions` > 0.
 *
 * @since 0.1.0
 * @category utils
 */
export const versioningOf = (config: BackendConfig): { readonly enabled: boolean; readonly maxVersions: number } =>
  config.versioning !== undefined
    ? { enabled: config.versioning.enabled, maxVersions: config.versioning.max_versions }
    : config.max_versions !== undefined && config.max_versions > 0
    ? { enabled: true, maxVersions: config.max_versions }
    : { enabled: false, maxVersions: 0 }
