import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import { describe, expect, it } from "@effect/vitest"
import { ConfigProvider, Effect, Layer, Option, Redacted, TestClock } from "effect"
import * as Fs from "node:fs"
import * as Path from "node:path"
import * as CredentialHelper from "../src/CredentialHelper.js"
import * as Credentials from "../src/Credentials.js"
import type { Credential } from "../src/Credentials.js"
import * as DockerConfig from "../src/DockerConfig.js"
import {
  answering,
  assertNoSecrets,
  basicAuth,
  recordCall,
  tempDir,
  type TempDir
} from "./support/credentialFixtures.js"

const get = (host: string, repository = "") =>
  Effect.flatMap(Credentials.Credentials, (c) => c.get(host, repository))

/** A comparable summary of a credential: `Basic user:password`, `AccessToken t`, `RefreshToken t (user)`. */
const show = (found: Option.Option<Credential>): string => {
  if (Option.isNone(found)) return "none"
  const c = found.value
  switch (c._tag) {
    case "Basic":
      return `Basic ${c.username}:${Redacted.value(c.password)}`
    case "AccessToken":
      return `AccessToken ${Redacted.value(c.token)}`
    case "RefreshToken":
      return `RefreshToken ${Redacted.value(c.token)}${c.username === undefined ? "" : ` (${c.username})`}`
  }
}

const lookup = (host: string, repository = "") => Effect.map(get(host, repository), show)

const ambient = (dir: TempDir, options: DockerConfig.Options = {}) =>
  Credentials.layerDockerConfig({ env: { HOME: dir.dir }, ...options }).pipe(
    Layer.provide(CredentialHelper.layerNode({ path: dir.path })),
    Layer.provide(NodeFileSystem.layer)
  )

const dockerFile = ".docker/config.json"
const containersFile = ".config/containers/auth.json"

describe("Credentials.layerDockerConfig", () => {
  it.scoped("auths entries: auth base64, username/password, identitytoken, registrytoken", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      dir.write(dockerFile, {
        auths: {
          "basic.example": { auth: basicAuth("alice", "pa:ss:word") },
          "fields.example": { username: "bob", password: "pw-fields" },
          "identity.example": { auth: basicAuth("00000000-0000-0000-0000-000000000000", ""), identitytoken: "refresh-1" },
          "bearer.example": { registrytoken: "bearer-1" },
          "empty.example": {},
          "nulls.example": { auth: null, email: "x@example.com" }
        },
        psFormat: "table {{.ID}}"
      })
      yield* Effect.gen(function*() {
        expect(yield* lookup("basic.example")).toBe("Basic alice:pa:ss:word")
        expect(yield* lookup("fields.example")).toBe("Basic bob:pw-fields")
        expect(yield* lookup("identity.example")).toBe(
          "RefreshToken refresh-1 (00000000-0000-0000-0000-000000000000)"
        )
        expect(yield* lookup("bearer.example")).toBe("AccessToken bearer-1")
        expect(yield* lookup("empty.example")).toBe("none")
        expect(yield* lookup("nulls.example")).toBe("none")
        expect(yield* lookup("unknown.example")).toBe("none")
      }).pipe(Effect.provide(ambient(dir)))
    }))

  it.scoped("host normalisation: scheme and /v2/ stripped, case-insensitive host, Docker Hub legacy key", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      dir.write(dockerFile, {
        auths: {
          "http://127.0.0.1:5002/v2/": { auth: basicAuth("u1", "p1") },
          "https://Registry.Example:8443": { auth: basicAuth("u2", "p2") },
          "https://index.docker.io/v1/": { auth: basicAuth("hubuser", "hubpass") }
        }
      })
      yield* Effect.gen(function*() {
        expect(yield* lookup("127.0.0.1:5002", "tfstate/app")).toBe("Basic u1:p1")
        expect(yield* lookup("registry.example:8443", "x")).toBe("Basic u2:p2")
        expect(yield* lookup("docker.io", "library/alpine")).toBe("Basic hubuser:hubpass")
        expect(yield* lookup("index.docker.io", "me/app")).toBe("Basic hubuser:hubpass")
        expect(yield* lookup("registry-1.docker.io", "me/app")).toBe("Basic hubuser:hubpass")
        expect(yield* lookup("127.0.0.1:5003")).toBe("none")
      }).pipe(Effect.provide(ambient(dir)))
    }))

  it.scoped("Docker Hub via credsStore: the helper is asked for https://index.docker.io/v1/", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      dir.helper(
        "desktop",
        `${recordCall(dir, "desktop")}\n${
          answering({
            "https://index.docker.io/v1/": { username: "hubuser", secret: "hub-from-helper" },
            "ghcr.io": { username: "gh", secret: "ghp_x" }
          })
        }`
      )
      dir.write(dockerFile, { auths: { "https://index.docker.io/v1/": {}, "ghcr.io": {} }, credsStore: "desktop" })
      yield* Effect.gen(function*() {
        expect(yield* lookup("docker.io", "library/alpine")).toBe("Basic hubuser:hub-from-helper")
        expect(yield* lookup("ghcr.io", "o/p")).toBe("Basic gh:ghp_x")
        expect(yield* lookup("quay.io", "o/p")).toBe("none")
      }).pipe(Effect.provide(ambient(dir)))
      expect(dir.calls("desktop")).toEqual(["https://index.docker.io/v1/", "ghcr.io", "quay.io"])
    }))

  it.scoped("host/path keys: the most specific match wins, by whole path segments", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      dir.write(containersFile, {
        auths: {
          "reg.example": { auth: basicAuth("host", "h") },
          "reg.example/team": { auth: basicAuth("team", "t") },
          "reg.example/team/app": { auth: basicAuth("app", "a") }
        }
      })
      yield* Effect.gen(function*() {
        expect(yield* lookup("reg.example", "team/app")).toBe("Basic app:a")
        expect(yield* lookup("reg.example", "team/app/sub")).toBe("Basic app:a")
        expect(yield* lookup("reg.example", "team/application")).toBe("Basic team:t")
        expect(yield* lookup("reg.example", "team")).toBe("Basic team:t")
        expect(yield* lookup("reg.example", "teams/app")).toBe("Basic host:h")
        expect(yield* lookup("reg.example", "")).toBe("Basic host:h")
      }).pipe(Effect.provide(ambient(dir)))
    }))

  it.scoped("within a file: credHelpers[host] over auths[host]; auths[host/path] over credHelpers; credsStore last", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      dir.helper("special", `${recordCall(dir, "special")}\n${answering({ "reg.example": { username: "helper", secret: "hs" } })}`)
      dir.helper("store", `${recordCall(dir, "store")}\n${answering({ "other.example": { username: "store", secret: "ss" } })}`)
      dir.write(dockerFile, {
        auths: {
          "reg.example": { auth: basicAuth("inline", "i") },
          "reg.example/pinned": { auth: basicAuth("pinned", "p") },
          "inline.example": { auth: basicAuth("inline2", "i2") }
        },
        credHelpers: { "reg.example": "special" },
        credsStore: "store"
      })
      yield* Effect.gen(function*() {
        expect(yield* lookup("reg.example", "a/b")).toBe("Basic helper:hs")
        expect(yield* lookup("reg.example", "pinned/x")).toBe("Basic pinned:p")
        expect(yield* lookup("inline.example", "x")).toBe("Basic inline2:i2")
        expect(yield* lookup("other.example", "x")).toBe("Basic store:ss")
      }).pipe(Effect.provide(ambient(dir)))
    }))

  it.scoped("each source is found: DOCKER_AUTH_CONFIG, $DOCKER_CONFIG, ~/.docker, $REGISTRY_AUTH_FILE, $XDG_RUNTIME_DIR, ~/.config", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const entry = (name: string) => ({ auths: { [`${name}.example`]: { auth: basicAuth(name, `${name}-pw`) } } })
      dir.write(dockerFile, entry("home-docker"))
      dir.write("dockercfg/config.json", entry("docker-config"))
      dir.write("registry-auth.json", entry("registry-auth-file"))
      dir.write("run/containers/auth.json", entry("xdg-runtime"))
      dir.write(containersFile, entry("config-home"))
      dir.write("xdg-config/containers/auth.json", entry("xdg-config-home"))
      const env = {
        HOME: dir.dir,
        DOCKER_AUTH_CONFIG: JSON.stringify(entry("env")),
        REGISTRY_AUTH_FILE: Path.join(dir.dir, "registry-auth.json"),
        XDG_RUNTIME_DIR: Path.join(dir.dir, "run")
      }
      yield* Effect.gen(function*() {
        for (const name of ["env", "home-docker", "registry-auth-file", "xdg-runtime", "config-home"]) {
          expect(yield* lookup(`${name}.example`)).toBe(`Basic ${name}:${name}-pw`)
        }
        expect(yield* lookup("docker-config.example")).toBe("none")
      }).pipe(Effect.provide(ambient(dir, { env })))
      // DOCKER_CONFIG replaces ~/.docker; XDG_CONFIG_HOME replaces ~/.config
      yield* Effect.gen(function*() {
        expect(yield* lookup("docker-config.example")).toBe("Basic docker-config:docker-config-pw")
        expect(yield* lookup("home-docker.example")).toBe("none")
        expect(yield* lookup("xdg-config-home.example")).toBe("Basic xdg-config-home:xdg-config-home-pw")
        expect(yield* lookup("config-home.example")).toBe("none")
      }).pipe(
        Effect.provide(ambient(dir, {
          env: {
            HOME: dir.dir,
            DOCKER_CONFIG: Path.join(dir.dir, "dockercfg"),
            XDG_CONFIG_HOME: Path.join(dir.dir, "xdg-config")
          }
        }))
      )
    }))

  it.scoped("across files: more specific wins; on a tie the earlier source (DOCKER_AUTH_CONFIG, then docker, then containers)", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      dir.write(dockerFile, { auths: { "reg.example": { auth: basicAuth("docker", "d") } } })
      dir.write(containersFile, {
        auths: {
          "reg.example": { auth: basicAuth("containers", "c") },
          "reg.example/team": { auth: basicAuth("containers-team", "ct") }
        }
      })
      yield* Effect.gen(function*() {
        expect(yield* lookup("reg.example", "x")).toBe("Basic docker:d")
        expect(yield* lookup("reg.example", "team/x")).toBe("Basic containers-team:ct")
      }).pipe(Effect.provide(ambient(dir)))
      const env = {
        HOME: dir.dir,
        DOCKER_AUTH_CONFIG: JSON.stringify({ auths: { "reg.example": { auth: basicAuth("env", "e") } } })
      }
      yield* Effect.gen(function*() {
        expect(yield* lookup("reg.example", "x")).toBe("Basic env:e")
        expect(yield* lookup("reg.example", "team/x")).toBe("Basic containers-team:ct")
      }).pipe(Effect.provide(ambient(dir, { env })))
    }))

  it.scoped("the environment is read through Config (ConfigProvider), no options needed", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      dir.write(dockerFile, { auths: { "cfg.example": { auth: basicAuth("viaconfig", "vc") } } })
      const layer = Credentials.layerDockerConfig().pipe(
        Layer.provide(CredentialHelper.layerNode({ path: dir.path })),
        Layer.provide(NodeFileSystem.layer),
        Layer.provide(Layer.setConfigProvider(ConfigProvider.fromMap(new Map([["HOME", dir.dir]]))))
      )
      expect(yield* lookup("cfg.example").pipe(Effect.provide(layer))).toBe("Basic viaconfig:vc")
    }))

  it.scoped("no files at all: anonymous", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      expect(yield* lookup("reg.example", "x").pipe(Effect.provide(ambient(dir)))).toBe("none")
    }))

  it.scoped("malformed files are CredentialsErrors naming the file, never quoting it", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const secret = "hunter2-in-file"
      dir.write(dockerFile, `{"auths": {"reg.example": {"auth": "${secret}"`)
      const notJson = yield* Effect.flip(get("reg.example", "x").pipe(Effect.provide(ambient(dir))))
      expect(notJson._tag).toBe("CredentialsError")
      expect(notJson.message).toContain(`from ${Path.join(dir.dir, dockerFile)}: not valid JSON`)
      expect(notJson.message).toContain("not valid JSON")

      dir.write(dockerFile, { auths: { "reg.example": { username: "u", password: { secret } } } })
      const wrongType = yield* Effect.flip(get("reg.example", "x").pipe(Effect.provide(ambient(dir))))
      expect(wrongType.message).toContain(`"auths"."reg.example"."password"`)

      dir.write(dockerFile, { auths: { "reg.example": { auth: `${secret}!!` }, "ok.example": { auth: basicAuth("u", "p") } } })
      const badBase64 = yield* Effect.flip(get("reg.example", "x").pipe(Effect.provide(ambient(dir))))
      expect(badBase64.message).toContain("not base64")
      expect("source" in badBase64 ? badBase64.source : "").toContain(`auths["reg.example"]`)
      // only the broken entry fails; the rest of the file works
      expect(yield* lookup("ok.example").pipe(Effect.provide(ambient(dir)))).toBe("Basic u:p")

      dir.write(dockerFile, { auths: { "reg.example": { auth: Buffer.from(secret).toString("base64") } } })
      const noColon = yield* Effect.flip(get("reg.example", "x").pipe(Effect.provide(ambient(dir))))
      expect(noColon.message).toContain("user:password")

      const env = { HOME: dir.dir, DOCKER_AUTH_CONFIG: `{"auths": ${secret}` }
      const badEnv = yield* Effect.flip(get("reg.example", "x").pipe(Effect.provide(ambient(dir, { env }))))
      expect(badEnv.message).toContain("from DOCKER_AUTH_CONFIG: not valid JSON")

      Fs.rmSync(Path.join(dir.dir, dockerFile))
      Fs.mkdirSync(Path.join(dir.dir, dockerFile))
      const directory = yield* Effect.flip(get("reg.example", "x").pipe(Effect.provide(ambient(dir))))
      expect(directory.message).toContain("not a regular file")

      for (const e of [notJson, wrongType, badBase64, noColon, badEnv, directory]) assertNoSecrets(e, [secret])
    }))

  it.scoped("explicit files: exactly those are read, a missing one is an error", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      dir.write(dockerFile, { auths: { "reg.example": { auth: basicAuth("home", "h") } } })
      const only = dir.write("only.json", { auths: { "only.example": { auth: basicAuth("only", "o") } } })
      yield* Effect.gen(function*() {
        expect(yield* lookup("only.example")).toBe("Basic only:o")
        expect(yield* lookup("reg.example")).toBe("none")
      }).pipe(Effect.provide(ambient(dir, { files: [only] })))
      const missing = yield* Effect.flip(
        get("reg.example").pipe(Effect.provide(ambient(dir, { files: [Path.join(dir.dir, "nope.json")] })))
      )
      expect(missing.message).toContain("does not exist")
    }))

  it.scoped("files are re-read after reloadAfter (TestClock): a docker login is picked up", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      dir.write(dockerFile, { auths: {} })
      yield* Effect.gen(function*() {
        expect(yield* lookup("reg.example")).toBe("none")
        dir.write(dockerFile, { auths: { "reg.example": { auth: basicAuth("late", "l") } } })
        expect(yield* lookup("reg.example")).toBe("none")
        yield* TestClock.adjust("11 seconds")
        expect(yield* lookup("reg.example")).toBe("Basic late:l")
      }).pipe(Effect.provide(ambient(dir)))
    }))
})

describe("Credentials.layerExplicit (OpenTofu oci_credentials blocks)", () => {
  const explicit = (dir: TempDir, blocks: Record<string, Credentials.ExplicitCredential>, defaultHelper?: string) =>
    Credentials.layerExplicit(blocks, { defaultHelper }).pipe(
      Layer.provide(CredentialHelper.layerNode({ path: dir.path }))
    )

  it.scoped("blocks per host[/path]: most specific wins; password, access token, refresh token, helper", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      dir.helper("tofu", `${recordCall(dir, "tofu")}\n${answering({ "helped.example": { username: "h", secret: "hp" } })}`)
      const layer = explicit(dir, {
        "reg.example": { username: "host", password: Redacted.make("h") },
        "reg.example/team": { accessToken: Redacted.make("team-token") },
        "https://Reg.Example/team/app/": { refreshToken: Redacted.make("app-refresh"), username: "ci" },
        "helped.example": { helper: "tofu" }
      })
      yield* Effect.gen(function*() {
        expect(yield* lookup("reg.example", "other")).toBe("Basic host:h")
        expect(yield* lookup("reg.example", "team/x")).toBe("AccessToken team-token")
        expect(yield* lookup("reg.example", "team/app")).toBe("RefreshToken app-refresh (ci)")
        expect(yield* lookup("helped.example", "x")).toBe("Basic h:hp")
        expect(yield* lookup("unknown.example", "x")).toBe("none")
      }).pipe(Effect.provide(layer))
      expect(dir.calls("tofu")).toEqual(["helped.example"])
    }))

  it.scoped("oci_default_credentials: the default helper for every other registry", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      dir.helper("global", `${recordCall(dir, "global")}\n${answering({ "any.example": { username: "g", secret: "gp" } })}`)
      const layer = explicit(dir, { "reg.example": { username: "host", password: Redacted.make("h") } }, "global")
      yield* Effect.gen(function*() {
        expect(yield* lookup("reg.example", "x")).toBe("Basic host:h")
        expect(yield* lookup("any.example", "x")).toBe("Basic g:gp")
        expect(yield* lookup("none.example", "x")).toBe("none")
      }).pipe(Effect.provide(layer))
    }))

  it.scoped("unusable blocks are InvalidConfig naming the block, not the secret", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const build = (blocks: Record<string, Credentials.ExplicitCredential>) =>
        Effect.flip(get("reg.example").pipe(Effect.provide(explicit(dir, blocks))))
      const both = yield* build({ "reg.example": { username: "u", password: Redacted.make("pw-x1"), helper: "h" } })
      expect(both._tag).toBe("InvalidConfig")
      expect(both.message).toContain(`oci_credentials "reg.example"`)
      const noPassword = yield* build({ "reg.example": { username: "u" } })
      expect(noPassword.message).toContain("username and password")
      const badHelper = yield* build({ "reg.example": { helper: "../evil" } })
      expect(badHelper.message).toContain("plain name")
      const duplicate = yield* build({
        "reg.example": { accessToken: Redacted.make("a") },
        "https://REG.example/v2/": { accessToken: Redacted.make("b") }
      })
      expect(duplicate.message).toContain("same registry path")
      for (const e of [both, noPassword, badHelper, duplicate]) assertNoSecrets(e, ["pw-x1"])
    }))
})

describe("Credentials.layer / layerChain precedence", () => {
  const everything = (dir: TempDir, sources: Credentials.Sources) =>
    Credentials.layer({ dockerConfig: { env: { HOME: dir.dir } }, ...sources }).pipe(
      Layer.provide(CredentialHelper.layerNode({ path: dir.path })),
      Layer.provide(NodeFileSystem.layer)
    )

  it.scoped("function > static > explicit > default helper > ambient > anonymous", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      dir.helper("global", `${recordCall(dir, "global")}\n${answering({ "helper.example": { username: "g", secret: "gp" } })}`)
      dir.write(dockerFile, {
        auths: Object.fromEntries(
          ["fn", "static", "explicit", "helper", "ambient"].map((n) => [`${n}.example`, { auth: basicAuth("ambient", "a") }])
        )
      })
      const layer = everything(dir, {
        credentialFunction: (host) =>
          Effect.succeed(
            host === "fn.example"
              ? Option.some<Credential>({ _tag: "AccessToken", token: Redacted.make("from-fn") })
              : Option.none()
          ),
        static: {
          "fn.example": { _tag: "AccessToken", token: Redacted.make("static") },
          "static.example": { _tag: "AccessToken", token: Redacted.make("static") }
        },
        explicit: {
          "fn.example": { accessToken: Redacted.make("explicit") },
          "static.example": { accessToken: Redacted.make("explicit") },
          "explicit.example": { accessToken: Redacted.make("explicit") }
        },
        defaultHelper: "global"
      })
      yield* Effect.gen(function*() {
        expect(yield* lookup("fn.example")).toBe("AccessToken from-fn")
        expect(yield* lookup("static.example")).toBe("AccessToken static")
        expect(yield* lookup("explicit.example")).toBe("AccessToken explicit")
        expect(yield* lookup("helper.example")).toBe("Basic g:gp")
        // the default helper says "not found": the question passes on to the ambient files
        expect(yield* lookup("ambient.example")).toBe("Basic ambient:a")
        expect(yield* lookup("nobody.example")).toBe("none")
      }).pipe(Effect.provide(layer))
    }))

  it.scoped("explicit configuration beats a more specific ambient entry", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      dir.write(dockerFile, { auths: { "reg.example/team/app": { auth: basicAuth("ambient", "a") } } })
      const layer = everything(dir, { explicit: { "reg.example": { accessToken: Redacted.make("explicit") } } })
      expect(yield* lookup("reg.example", "team/app").pipe(Effect.provide(layer))).toBe("AccessToken explicit")
    }))

  it.scoped("discoverAmbientCredentials: false ignores every ambient file", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      dir.write(dockerFile, { auths: { "reg.example": { auth: basicAuth("ambient", "a") } } })
      dir.write(containersFile, "this file is broken")
      const layer = everything(dir, {
        explicit: { "tofu.example": { username: "t", password: Redacted.make("tp") } },
        discoverAmbientCredentials: false
      })
      yield* Effect.gen(function*() {
        expect(yield* lookup("reg.example")).toBe("none")
        expect(yield* lookup("tofu.example")).toBe("Basic t:tp")
      }).pipe(Effect.provide(layer))
    }))

  it.scoped("a failing source fails the lookup instead of falling through; an earlier Some short-circuits it", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      dir.helper("broken", `cat >/dev/null\nexit 2`)
      dir.write(dockerFile, { auths: { "reg.example": { auth: basicAuth("ambient", "a") } } })
      const layer = everything(dir, {
        explicit: { "reg.example/broken": { helper: "broken" }, "reg.example/fine": { accessToken: Redacted.make("ok") } }
      })
      yield* Effect.gen(function*() {
        const error = yield* Effect.flip(get("reg.example", "broken/x"))
        expect(error._tag).toBe("CredentialsError")
        expect(yield* lookup("reg.example", "fine/x")).toBe("AccessToken ok")
        expect(yield* lookup("reg.example", "other")).toBe("Basic ambient:a")
      }).pipe(Effect.provide(layer))
      // a broken ambient file does not matter when an earlier source answers
      dir.write(dockerFile, "{ broken")
      const earlier = everything(dir, { static: { "reg.example": { _tag: "AccessToken", token: Redacted.make("s") } } })
      yield* Effect.gen(function*() {
        expect(yield* lookup("reg.example", "x")).toBe("AccessToken s")
        expect((yield* Effect.flip(get("other.example", "x")))._tag).toBe("CredentialsError")
      }).pipe(Effect.provide(earlier))
    }))

  it.scoped("layerChain shares one helper cache between sources", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      dir.helper("shared", `${recordCall(dir, "shared")}\n${answering({ "reg.example": { username: "s", secret: "sp" } })}`)
      dir.write(dockerFile, { credHelpers: { "reg.example": "shared" } })
      const layer = Credentials.layerChain([
        Credentials.layerExplicit({ "reg.example/a": { helper: "shared" } }),
        Credentials.layerDockerConfig({ env: { HOME: dir.dir } })
      ]).pipe(
        Layer.provide(CredentialHelper.layerNode({ path: dir.path })),
        Layer.provide(NodeFileSystem.layer)
      )
      yield* Effect.gen(function*() {
        expect(yield* lookup("reg.example", "a/x")).toBe("Basic s:sp")
        expect(yield* lookup("reg.example", "b/x")).toBe("Basic s:sp")
      }).pipe(Effect.provide(layer))
      expect(dir.calls("shared")).toHaveLength(1)
    }))
})
