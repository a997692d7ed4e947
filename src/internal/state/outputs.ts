/**
 * The root outputs of a Terraform state, as `terraform_remote_state` exposes them.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import { CorruptState } from "../../Errors.js"

/** @internal */
export const Output = Schema.Struct({
  value: Schema.Unknown,
  type: Schema.optional(Schema.Unknown),
  sensitive: Schema.optional(Schema.Boolean)
})

/** @internal */
export type Output = typeof Output.Type

const StateOutputs = Schema.parseJson(Schema.Struct({
  version: Schema.optional(Schema.Number),
  outputs: Schema.optionalWith(Schema.Record({ key: Schema.String, value: Output }), { default: () => ({}) })
}))

const decode = Schema.decodeUnknownEither(StateOutputs)

/** @internal */
export const readOutputs = (data: Uint8Array, digest: string): Effect.Effect<Readonly<Record<string, Output>>, CorruptState> => {
  const result = decode(new TextDecoder().decode(data))
  return result._tag === "Right"
    ? Effect.succeed(result.right.outputs)
    : Effect.fail(
      new CorruptState({
        digest,
        reason: "the state is not a Terraform state JSON document (is it encrypted?), so its outputs cannot be read"
      })
    )
}
