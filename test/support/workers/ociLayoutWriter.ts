/**
 * A writer in its own OS process, for the OCI-layout multi-process test: runs `writerLoop` through
 * its own `OciLayoutRegistry` (so only the lock file serialises it with the other writers) and
 * prints one JSON line (`WriterResult`). Bundled with esbuild by the test (no TS loader is
 * installed), so it imports the TypeScript sources directly.
 *
 * usage: node ociLayoutWriter.mjs <root> <repository> <id> <rounds>
 */
import { Effect } from "effect"
import * as OciLayoutRegistry from "../../../src/OciLayoutRegistry.js"
import { writerLoop } from "../ociLayoutWriter.js"

const [root, repository, id, rounds] = process.argv.slice(2)

const program = writerLoop(repository!, id!, Number(rounds)).pipe(
  Effect.provide(OciLayoutRegistry.layer(root!, { gcGracePeriod: 0 }))
)

Effect.runPromise(program).then(
  (result) => process.stdout.write(`${JSON.stringify(result)}\n`),
  (error: unknown) => {
    process.stderr.write(`${String(error)}\n`)
    process.exitCode = 1
  }
)
