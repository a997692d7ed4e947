/**
 * vitest globalSetup: compile `src/` to `dist/` once per run, for tests that start the library in
 * child processes (multi-process lock stress, crash tests, the CLI binary).
 */
import { execFileSync } from "node:child_process"
import { fileURLToPath } from "node:url"

export default function setup(): void {
  const root = fileURLToPath(new URL("../../", import.meta.url))
  const tsc = fileURLToPath(new URL("../../node_modules/typescript/bin/tsc", import.meta.url))
  try {
    execFileSync(process.execPath, [tsc, "-p", "tsconfig.build.json"], { cwd: root, stdio: "inherit" })
  } catch {
    // tsc still emits on type errors; the type check proper is CI's `tsc --noEmit` step, and
    // tests that need dist/ fail on their own if it is unusable.
    console.warn("buildSetup: tsc reported errors; dist/ may be incomplete")
  }
}
