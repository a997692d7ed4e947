/**
 * Exit codes of the `oras-state` CLI, the errors only the CLI raises, and how any failure becomes
 * one line on stderr (with its tag), an exit code and, under `--json`, a JSON document on stdout.
 *
 * | code | meaning |
 * |---|---|
 * | 0 | success (`lock show`: the workspace is not locked) |
 * | 1 | failure: corrupt or oversized state, registry error, declined confirmation, a bug |
 * | 2 | usage: bad arguments or options, invalid configuration, invalid workspace name, confirmation needed but stdin is not a terminal |
 * | 3 | locked or conflicting: held by someone else, lock ID mismatch, lock lost, `state push` lineage/serial refusal (`lock show`: the workspace is locked) |
 * | 4 | not found: no state, no such version, no such file |
 * | 5 | registry unreachable or transient trouble (connection refused, timeouts, 429/5xx after retries, inconsistent reads) |
 * | 6 | authentication or authorization failed, or a credential source failed |
 * | 130 | interrupted (SIGINT/SIGTERM) |
 *
 * @since 0.1.0
 */
import * as Data from "effect/Data"
import * as Predicate from "effect/Predicate"

/**
 * @since 0.1.0
 * @category constants
 */
export const ExitCode = {
  ok: 0,
  failure: 1,
  usage: 2,
  conflict: 3,
  notFound: 4,
  unavailable: 5,
  unauthorized: 6,
  interrupted: 130
} as const

/**
 * The exit-code table shown in every `--help` (footer).
 *
 * @since 0.1.0
 * @category constants
 */
export const exitCodeHelp: ReadonlyArray<readonly [string, string]> = [
  ["0", "success; `lock show`: the workspace is not locked"],
  ["1", "failure (corrupt or oversized state, registry error, declined confirmation)"],
  ["2", "usage: bad arguments, invalid configuration or workspace name, confirmation needed without a terminal"],
  ["3", "locked or conflicting (lock held by another, lock ID mismatch, lineage/serial refused); `lock show`: locked"],
  ["4", "not found (no state, no such version, no such file)"],
  ["5", "registry unreachable or transient failure (after retries)"],
  ["6", "authentication/authorization failed, or a credential source failed"],
  ["130", "interrupted"]
]

/**
 * Bad command-line input that the parser could not catch.
 *
 * @since 0.1.0
 * @category errors
 */
export class UsageError extends Data.TaggedError("UsageError")<{ readonly message: string }> {}

/**
 * Something asked for does not exist (state, version, file).
 *
 * @since 0.1.0
 * @category errors
 */
export class NotFound extends Data.TaggedError("NotFound")<{ readonly message: string }> {}

/**
 * `state push` refused, as Terraform refuses it: another lineage, a lower serial, or the same
 * serial with other content. `--force` overrides.
 *
 * @since 0.1.0
 * @category errors
 */
export class StateMismatch extends Data.TaggedError("StateMismatch")<{ readonly message: string }> {}

/**
 * Input that is not a Terraform state document where one is required.
 *
 * @since 0.1.0
 * @category errors
 */
export class InvalidState extends Data.TaggedError("InvalidState")<{ readonly message: string }> {}

/**
 * The user declined a confirmation.
 *
 * @since 0.1.0
 * @category errors
 */
export class Aborted extends Data.TaggedError("Aborted")<{ readonly message: string }> {}

/**
 * A local file could not be read or written.
 *
 * @since 0.1.0
 * @category errors
 */
export class FileError extends Data.TaggedError("FileError")<{ readonly message: string }> {}

const byTag: Readonly<Record<string, number>> = {
  UsageError: ExitCode.usage,
  InvalidConfig: ExitCode.usage,
  InvalidReference: ExitCode.usage,
  LockConflict: ExitCode.conflict,
  LockIdMismatch: ExitCode.conflict,
  LockLost: ExitCode.conflict,
  StateMismatch: ExitCode.conflict,
  NotFound: ExitCode.notFound,
  TransientRegistry: ExitCode.unavailable,
  InconsistentRead: ExitCode.unavailable,
  Unauthorized: ExitCode.unauthorized,
  CredentialsError: ExitCode.unauthorized
}

/**
 * The tag of a failure (`_tag`), or a generic name for foreign values.
 *
 * @since 0.1.0
 * @category utils
 */
export const tagOf = (error: unknown): string =>
  Predicate.hasProperty(error, "_tag") && typeof error._tag === "string"
    ? error._tag
    : error instanceof Error
    ? error.name
    : "Error"

/**
 * @since 0.1.0
 * @category utils
 */
export const exitCodeOf = (error: unknown): number => byTag[tagOf(error)] ?? ExitCode.failure

/**
 * A one-line message (newlines folded) of a failure.
 *
 * @since 0.1.0
 * @category utils
 */
export const messageOf = (error: unknown): string => {
  const raw = Predicate.hasProperty(error, "message") && typeof error.message === "string" && error.message !== ""
    ? error.message
    : String(error)
  return raw.replace(/\s*\n\s*/g, " ").trim()
}
