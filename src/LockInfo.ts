/**
 * `LockInfo`: who holds a lock, exactly as OpenTofu/Terraform serialise it (JSON keys `ID`,
 * `Operation`, `Info`, `Who`, `Version`, `Created`, `Path`). Stored verbatim in lock manifests and
 * returned to contenders, so `-lock-timeout` can report and wait on the holder.
 *
 * @since 0.1.0
 */
import * as Schema from "effect/Schema"

const field = Schema.optionalWith(Schema.String, { default: () => "" })

/**
 * @since 0.1.0
 * @category models
 */
export const LockInfo = Schema.Struct({
  ID: field,
  Operation: field,
  Info: field,
  Who: field,
  Version: field,
  Created: field,
  Path: field
})

/**
 * @since 0.1.0
 * @category models
 */
export type LockInfo = typeof LockInfo.Type

/**
 * @since 0.1.0
 * @category codecs
 */
export const LockInfoFromJson = Schema.parseJson(LockInfo)

/**
 * @since 0.1.0
 * @category constructors
 */
export const make = (fields: Partial<LockInfo>): LockInfo => ({
  ID: fields.ID ?? "",
  Operation: fields.Operation ?? "",
  Info: fields.Info ?? "",
  Who: fields.Who ?? "",
  Version: fields.Version ?? "",
  Created: fields.Created ?? "",
  Path: fields.Path ?? ""
})

/**
 * Serialise with the keys in OpenTofu's order.
 *
 * @since 0.1.0
 * @category codecs
 */
export const toJson = (info: LockInfo): string =>
  JSON.stringify({
    ID: info.ID,
    Operation: info.Operation,
    Info: info.Info,
    Who: info.Who,
    Version: info.Version,
    Created: info.Created,
    Path: info.Path
  })
