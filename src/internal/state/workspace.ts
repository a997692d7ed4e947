/**
 * Workspace names: validation and their tags.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import { InvalidReference } from "../../Errors.js"
import * as WireFormat from "../../WireFormat.js"

/** @internal */
export interface WorkspaceTags {
  readonly name: string
  readonly wsTag: string
  readonly state: string
  readonly lock: string
  readonly unlocked: string
  readonly hashed: boolean
}

/** @internal */
export const defaultWorkspace = "default"

/**
 * Names are free text for OpenTofu; we only refuse what cannot be a name at all: empty, over 1024
 * UTF-8 bytes, or containing control characters.
 *
 * @internal
 */
export const validateWorkspace = (name: string): Effect.Effect<WorkspaceTags, InvalidReference> => {
  const invalid = (reason: string) => Effect.fail(new InvalidReference({ kind: "workspace", value: name, reason }))
  if (name.length === 0) return invalid("must not be empty")
  if (Buffer.byteLength(name, "utf8") > 1024) return invalid("longer than 1024 bytes")
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(name)) return invalid("contains control characters")
  const wsTag = WireFormat.workspaceTag(name)
  return Effect.succeed({
    name,
    wsTag,
    state: WireFormat.stateTag(wsTag),
    lock: WireFormat.lockTag(wsTag),
    unlocked: WireFormat.unlockedTag(wsTag),
    hashed: wsTag !== name
  })
}
