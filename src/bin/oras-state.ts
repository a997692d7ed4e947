#!/usr/bin/env node
/**
 * The `oras-state` executable: `main` on `process.argv`, exit code from `cli/errors.ts`
 * (130 when interrupted by SIGINT/SIGTERM).
 *
 * @since 0.1.0
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as Cause from "effect/Cause"
import * as Exit from "effect/Exit"
import { main } from "../cli/main.js"

// A closed pipe (`oras-state versions show 3 | head`) is not an error worth a stack trace.
for (const stream of [process.stdout, process.stderr]) {
  stream.on("error", (error: NodeJS.ErrnoException) => {
    if (error.code === "EPIPE") process.exit(0)
    throw error
  })
}

NodeRuntime.runMain(main(process.argv), {
  disableErrorReporting: true,
  disablePrettyLogger: true,
  teardown: (exit, onExit) => {
    if (Exit.isSuccess(exit)) onExit(typeof exit.value === "number" ? exit.value : 0)
    else onExit(Cause.isInterruptedOnly(exit.cause) ? 130 : 1)
  }
})
