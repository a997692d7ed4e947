import { it } from "@effect/vitest"
import { Effect } from "effect"
it.effect("smoke", () => Effect.sync(() => { if (1 + 1 !== 2) throw new Error("x") }))
