/**
 * Client-side validation of OCI names. Real registries answer malformed names with 404 "page not
 * found" or even 500 with a leaked path (distribution 2.8), so nothing malformed is ever sent.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import { InvalidReference } from "../Errors.js"
import * as Digest from "../Digest.js"

const repositoryComponent = /^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*$/
const tagPattern = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/

/** @internal */
export const isValidTag = (tag: string): boolean => tagPattern.test(tag)

/** @internal */
export const isValidRepository = (name: string): boolean =>
  name.length > 0 && name.length <= 255 && name.split("/").every((part) => repositoryComponent.test(part))

/** @internal */
export const validateRepository = (name: string): Effect.Effect<string, InvalidReference> =>
  isValidRepository(name)
    ? Effect.succeed(name)
    : Effect.fail(
      new InvalidReference({
        kind: "repository",
        value: name,
        reason: "must be lowercase path components [a-z0-9] joined by '.', '_', '__' or '-', at most 255 characters"
      })
    )

/** @internal */
export const validateTag = (tag: string): Effect.Effect<string, InvalidReference> =>
  isValidTag(tag)
    ? Effect.succeed(tag)
    : Effect.fail(
      new InvalidReference({ kind: "tag", value: tag, reason: "must match [A-Za-z0-9_][A-Za-z0-9._-]{0,127}" })
    )

/** @internal */
export const validateDigest = (digest: string): Effect.Effect<Digest.Digest, InvalidReference> =>
  Digest.isDigest(digest)
    ? Effect.succeed(digest)
    : Effect.fail(new InvalidReference({ kind: "digest", value: digest, reason: "must be sha256:<64 lowercase hex>" }))

/** A manifest reference is either a tag or a digest. @internal */
export const validateReference = (reference: string): Effect.Effect<string, InvalidReference> =>
  reference.includes(":")
    ? validateDigest(reference)
    : isValidTag(reference)
    ? Effect.succeed(reference)
    : Effect.fail(
      new InvalidReference({ kind: "reference", value: reference, reason: "neither a valid tag nor a sha256 digest" })
    )

/** @internal */
export const isDigestReference = (reference: string): boolean => reference.startsWith("sha256:")
