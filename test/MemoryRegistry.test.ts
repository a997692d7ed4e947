import { describe } from "@effect/vitest"
import * as MemoryRegistry from "../src/MemoryRegistry.js"
import { registryBehaviour } from "./support/registrySuite.js"

describe("MemoryRegistry behaviour", () => {
  registryBehaviour({
    layer: () => MemoryRegistry.layer(),
    tagDelete: "supported",
    repository: (name) => `suite/${name}`
  })
})

describe("MemoryRegistry with distribution 2.8 quirks", () => {
  registryBehaviour({
    layer: () => MemoryRegistry.layer({ quirks: { tagDeleteUnsupported: true, ignoresTagPageSize: true } }),
    tagDelete: "unsupported",
    repository: (name) => `suite/${name}`
  })
})
