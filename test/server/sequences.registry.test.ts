/**
 * Terraform/OpenTofu request sequences against a server over a real registry (distribution 2.8,
 * plain HTTP, started by the vitest global setup), through `HttpRegistry`.
 */
import { describe, inject } from "@effect/vitest"
import { Layer } from "effect"
import * as Credentials from "../../src/Credentials.js"
import * as HttpRegistry from "../../src/HttpRegistry.js"
import * as RateLimiter from "../../src/RateLimiter.js"
import * as StateBackend from "../../src/StateBackend.js"
import { sequenceSuite } from "./sequences.js"

const registries = inject("registries")
const run = `r${Date.now().toString(36)}${Math.floor(Math.random() * 1e4).toString(36)}`
let counter = 0

describe("server sequences over distribution 2.8 (plain)", () => {
  sequenceSuite({
    backend: () =>
      StateBackend.layer({ repository: `${run}/server/seq-${++counter}`, versioning: { enabled: true } }).pipe(
        Layer.provide(HttpRegistry.layerNode({ registry: registries.plain.host, retry: { maxRetries: 0 } })),
        Layer.provide(Credentials.layerNone),
        Layer.provide(RateLimiter.layerUnlimited)
      )
  })
})
