/**
 * Terraform/OpenTofu request sequences against a server over the in-memory registry.
 */
import { describe } from "@effect/vitest"
import { Layer } from "effect"
import * as MemoryRegistry from "../../src/MemoryRegistry.js"
import * as StateBackend from "../../src/StateBackend.js"
import { sequenceSuite } from "./sequences.js"

describe("server sequences over MemoryRegistry", () => {
  sequenceSuite({
    backend: () =>
      StateBackend.layer({ repository: "team/infra-state", versioning: { enabled: true } }).pipe(
        Layer.provide(MemoryRegistry.layer())
      )
  })
})
