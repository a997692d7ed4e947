/**
 * The tagged errors of oras-state.
 *
 * Every failure a registry, the network or a user can cause is one of these; defects are bugs.
 * Messages are built from fields that never hold a credential: URLs are stripped of userinfo and
 * query strings before they reach an error (see `internal/redact.ts`).
 *
 * @since 0.1.0
 */
import * as Predicate from "effect/Predicate"
import * as Schema from "effect/Schema"
import { LockInfo } from "./LockInfo.js"

/**
 * @since 0.1.0
 * @category type ids
 */
export const TypeId: unique symbol = Symbol.for("oras-state/Errors")

/**
 * @since 0.1.0
 * @category type ids
 */
export type TypeId = typeof TypeId

/**
 * A failure that may go away if the same idempotent request is sent again: 429, 408, 5xx except 501,
 * connection resets and timeouts. The only error the retry policy retries.
 *
 * @since 0.1.0
 * @category errors
 */
export class TransientRegistry extends Schema.TaggedError<TransientRegistry>("oras-state/TransientRegistry")(
  "TransientRegistry",
  {
    operation: Schema.String,
    status: Schema.optional(Schema.Number),
    code: Schema.optional(Schema.String),
    reason: Schema.String,
    /** The server's `Retry-After`, in milliseconds, when it sent one. */
    retryAfterMillis: Schema.optional(Schema.Number)
  }
) {
  readonly [TypeId]: TypeId = TypeId
  override get message(): string {
    return `${this.operation}: transient registry failure${formatStatus(this.status, this.code)}: ${this.reason}`
  }
}

/**
 * A non-transient answer from the registry (4xx other than auth, 501, unexpected status), with the
 * OCI error code when the body carried one.
 *
 * @since 0.1.0
 * @category errors
 */
export class RegistryError extends Schema.TaggedError<RegistryError>("oras-state/RegistryError")("RegistryError", {
  operation: Schema.String,
  status: Schema.optional(Schema.Number),
  code: Schema.optional(Schema.String),
  reason: Schema.String
}) {
  readonly [TypeId]: TypeId = TypeId
  override get message(): string {
    return `${this.operation}: registry error${formatStatus(this.status, this.code)}: ${this.reason}`
  }
}

/**
 * The registry refused our identity (401 after authenticating, 403), or demanded credentials we do
 * not have. Never carries the credential itself.
 *
 * @since 0.1.0
 * @category errors
 */
export class Unauthorized extends Schema.TaggedError<Unauthorized>("oras-state/Unauthorized")("Unauthorized", {
  operation: Schema.String,
  status: Schema.Number,
  code: Schema.optional(Schema.String),
  reason: Schema.String
}) {
  readonly [TypeId]: TypeId = TypeId
  override get message(): string {
    return `${this.operation}: unauthorized${formatStatus(this.status, this.code)}: ${this.reason}`
  }
}

/**
 * The registry does not support an operation: DELETE answered 405 (GHCR, Docker Hub tags, registries
 * with deletion disabled) or deletion by tag refused (distribution 2.8, Harbor).
 *
 * @since 0.1.0
 * @category errors
 */
export class Unsupported extends Schema.TaggedError<Unsupported>("oras-state/Unsupported")("Unsupported", {
  operation: Schema.String,
  status: Schema.optional(Schema.Number),
  code: Schema.optional(Schema.String),
  reason: Schema.String
}) {
  readonly [TypeId]: TypeId = TypeId
  override get message(): string {
    return `${this.operation}: unsupported by the registry${formatStatus(this.status, this.code)}: ${this.reason}`
  }
}

/**
 * Content that does not match what it claims to be: a digest or size mismatch, a bad media type or
 * artifact type, a manifest that does not parse, an oversized manifest.
 *
 * @since 0.1.0
 * @category errors
 */
export class CorruptState extends Schema.TaggedError<CorruptState>("oras-state/CorruptState")("CorruptState", {
  reason: Schema.String,
  digest: Schema.optional(Schema.String)
}) {
  readonly [TypeId]: TypeId = TypeId
  override get message(): string {
    return this.digest === undefined ? `corrupt content: ${this.reason}` : `corrupt content ${this.digest}: ${this.reason}`
  }
}

/**
 * A repository name, tag or digest that the OCI grammar rejects. Checked before any request is sent,
 * because real registries answer such names with 404s or even 500s.
 *
 * @since 0.1.0
 * @category errors
 */
export class InvalidReference extends Schema.TaggedError<InvalidReference>("oras-state/InvalidReference")(
  "InvalidReference",
  {
    kind: Schema.Literal("registry", "repository", "tag", "digest", "reference", "workspace"),
    value: Schema.String,
    reason: Schema.String
  }
) {
  readonly [TypeId]: TypeId = TypeId
  override get message(): string {
    return `invalid ${this.kind} ${JSON.stringify(truncate(this.value, 200))}: ${this.reason}`
  }
}

/**
 * A configuration value that cannot be used. Names the key; the value is shown unless the key is
 * secret, in which case it is redacted.
 *
 * @since 0.1.0
 * @category errors
 */
export class InvalidConfig extends Schema.TaggedError<InvalidConfig>("oras-state/InvalidConfig")("InvalidConfig", {
  key: Schema.String,
  value: Schema.optional(Schema.String),
  reason: Schema.String
}) {
  readonly [TypeId]: TypeId = TypeId
  override get message(): string {
    const value = this.value === undefined ? "" : ` = ${JSON.stringify(truncate(this.value, 200))}`
    return `invalid configuration ${this.key}${value}: ${this.reason}`
  }
}

/**
 * A state larger than `max_state_size` (checked on the decompressed size while streaming, and
 * before upload).
 *
 * @since 0.1.0
 * @category errors
 */
export class StateTooLarge extends Schema.TaggedError<StateTooLarge>("oras-state/StateTooLarge")("StateTooLarge", {
  size: Schema.optional(Schema.Number),
  limit: Schema.Number
}) {
  readonly [TypeId]: TypeId = TypeId
  override get message(): string {
    const size = this.size === undefined ? "more than" : `${this.size} bytes, over`
    return `state size ${size} the maximum of ${this.limit} bytes; raise max_state_size to allow it`
  }
}

/**
 * A credential source failed (a credential helper crashed, hung or printed garbage; a config file
 * is unreadable). "No credentials" is not an error: it means anonymous access.
 *
 * @since 0.1.0
 * @category errors
 */
export class CredentialsError extends Schema.TaggedError<CredentialsError>("oras-state/CredentialsError")(
  "CredentialsError",
  {
    host: Schema.String,
    source: Schema.String,
    reason: Schema.String
  }
) {
  readonly [TypeId]: TypeId = TypeId
  override get message(): string {
    return `credentials for ${this.host} from ${this.source}: ${this.reason}`
  }
}

/**
 * The workspace is locked by someone else. `info` is the holder's LockInfo as OpenTofu serialises
 * it, so `-lock-timeout` can report and wait on the holder.
 *
 * @since 0.1.0
 * @category errors
 */
export class LockConflict extends Schema.TaggedError<LockConflict>("oras-state/LockConflict")("LockConflict", {
  workspace: Schema.String,
  info: LockInfo
}) {
  readonly [TypeId]: TypeId = TypeId
  override get message(): string {
    const i = this.info
    const who = [i.Who && `by ${i.Who}`, i.Operation && `for ${i.Operation}`, i.Created && `since ${i.Created}`]
      .filter(Boolean).join(" ")
    return `workspace ${JSON.stringify(this.workspace)} is locked${who === "" ? "" : ` ${who}`} (lock ID ${i.ID || "unknown"})`
  }
}

/**
 * The lock (or the state under it) could not be read reliably: an unreadable lock manifest, or a
 * registry whose reads contradict themselves. Retrying later may succeed.
 *
 * @since 0.1.0
 * @category errors
 */
export class InconsistentRead extends Schema.TaggedError<InconsistentRead>("oras-state/InconsistentRead")(
  "InconsistentRead",
  {
    workspace: Schema.String,
    reason: Schema.String
  }
) {
  readonly [TypeId]: TypeId = TypeId
  override get message(): string {
    return `inconsistent read of workspace ${JSON.stringify(this.workspace)}: ${this.reason}`
  }
}

/**
 * `unlock(id)` with an ID other than the holder's.
 *
 * @since 0.1.0
 * @category errors
 */
export class LockIdMismatch extends Schema.TaggedError<LockIdMismatch>("oras-state/LockIdMismatch")("LockIdMismatch", {
  workspace: Schema.String,
  given: Schema.String,
  held: Schema.optional(Schema.String)
}) {
  readonly [TypeId]: TypeId = TypeId
  override get message(): string {
    return this.held === undefined
      ? `workspace ${JSON.stringify(this.workspace)} is not locked by ${this.given}`
      : `lock ID mismatch on workspace ${JSON.stringify(this.workspace)}: held by ${this.held}, not ${this.given}`
  }
}

/**
 * Fencing: a write under a lock that is no longer ours (expired and taken over, or removed).
 * The state did not land.
 *
 * @since 0.1.0
 * @category errors
 */
export class LockLost extends Schema.TaggedError<LockLost>("oras-state/LockLost")("LockLost", {
  workspace: Schema.String,
  lockId: Schema.String,
  reason: Schema.String
}) {
  readonly [TypeId]: TypeId = TypeId
  override get message(): string {
    return `lock ${this.lockId} on workspace ${JSON.stringify(this.workspace)} is no longer held: ${this.reason}`
  }
}

/**
 * The errors any `Registry` operation can fail with.
 *
 * @since 0.1.0
 * @category errors
 */
export type RegistryFailure = TransientRegistry | RegistryError | Unauthorized | InvalidReference | CredentialsError

/**
 * @since 0.1.0
 * @category guards
 */
export const isTransientRegistry = (u: unknown): u is TransientRegistry =>
  Predicate.isTagged(u, "TransientRegistry") && Predicate.hasProperty(u, TypeId)

/**
 * @since 0.1.0
 * @category guards
 */
export const isOrasStateError = (u: unknown): u is { readonly _tag: string; readonly message: string } =>
  Predicate.hasProperty(u, TypeId)

const formatStatus = (status: number | undefined, code: string | undefined): string =>
  status === undefined && code === undefined
    ? ""
    : ` (${[status === undefined ? undefined : `HTTP ${status}`, code].filter(Boolean).join(" ")})`

const truncate = (s: string, max: number): string => (s.length <= max ? s : `${s.slice(0, max)}…`)
