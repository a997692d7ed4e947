import { describe, expect, it } from "@effect/vitest"
import { FastCheck } from "effect"
import { type Challenge, challengeScopes, parseChallenges } from "../../src/internal/http/challenge.js"

describe("parseChallenges", () => {
  it("distribution 2.8 token auth", () => {
    expect(
      parseChallenges(
        "Bearer realm=\"http://127.0.0.1:5080/token\",service=\"tfstate-registry\",scope=\"repository:tfstate/demo:push,pull\""
      )
    ).toEqual([
      {
        scheme: "bearer",
        params: {
          realm: "http://127.0.0.1:5080/token",
          service: "tfstate-registry",
          scope: "repository:tfstate/demo:push,pull"
        }
      }
    ])
  })

  it("distribution 2.8 with error=\"insufficient_scope\"", () => {
    const [challenge, ...rest] = parseChallenges(
      "Bearer realm=\"http://127.0.0.1:5080/token\",service=\"tfstate-registry\",scope=\"repository:tfstate/demo:pull,push\",error=\"insufficient_scope\""
    )
    expect(rest).toEqual([])
    expect(challenge!.scheme).toBe("bearer")
    expect(challenge!.params).toEqual({
      realm: "http://127.0.0.1:5080/token",
      service: "tfstate-registry",
      scope: "repository:tfstate/demo:pull,push",
      error: "insufficient_scope"
    })
  })

  it("GHCR", () => {
    expect(
      parseChallenges("Bearer realm=\"https://ghcr.io/token\",service=\"ghcr.io\",scope=\"repository:acme/tfstate:pull\"")
    ).toEqual([
      {
        scheme: "bearer",
        params: { realm: "https://ghcr.io/token", service: "ghcr.io", scope: "repository:acme/tfstate:pull" }
      }
    ])
  })

  it("Docker Hub", () => {
    expect(
      parseChallenges(
        "Bearer realm=\"https://auth.docker.io/token\",service=\"registry.docker.io\",scope=\"repository:library/alpine:pull\""
      )[0]!.params
    ).toEqual({
      realm: "https://auth.docker.io/token",
      service: "registry.docker.io",
      scope: "repository:library/alpine:pull"
    })
  })

  it("Basic", () => {
    expect(parseChallenges("Basic realm=\"x\"")).toEqual([{ scheme: "basic", params: { realm: "x" } }])
    expect(parseChallenges("Basic realm=\"Registry Realm\", charset=\"UTF-8\"")).toEqual([
      { scheme: "basic", params: { realm: "Registry Realm", charset: "UTF-8" } }
    ])
  })

  it("two challenges comma-joined in one header", () => {
    expect(parseChallenges("Bearer realm=\"a\",service=\"b\", Basic realm=\"c\"")).toEqual([
      { scheme: "bearer", params: { realm: "a", service: "b" } },
      { scheme: "basic", params: { realm: "c" } }
    ])
    expect(parseChallenges("Basic realm=\"c\",Bearer realm=\"a\",service=\"b\"")).toEqual([
      { scheme: "basic", params: { realm: "c" } },
      { scheme: "bearer", params: { realm: "a", service: "b" } }
    ])
  })

  it("challenges without parameters", () => {
    expect(parseChallenges("Negotiate, Basic realm=\"x\", NTLM")).toEqual([
      { scheme: "negotiate", params: {} },
      { scheme: "basic", params: { realm: "x" } },
      { scheme: "ntlm", params: {} }
    ])
  })

  it("escaped quotes and backslashes in quoted values", () => {
    expect(parseChallenges("Basic realm=\"say \\\"hi\\\" \\\\ bye\", charset=\"UTF-8\"")).toEqual([
      { scheme: "basic", params: { realm: "say \"hi\" \\ bye", charset: "UTF-8" } }
    ])
    // commas, equals signs and scheme-like words inside a quoted value are data
    expect(parseChallenges("Bearer realm=\"a, Basic realm=b\", service=\"s\"")).toEqual([
      { scheme: "bearer", params: { realm: "a, Basic realm=b", service: "s" } }
    ])
  })

  it("odd spacing and case", () => {
    expect(parseChallenges("  BEARER   Realm = \"https://x/token\" ,\tSERVICE=reg ,scope= \"a b\"  ,  bAsIc REALM=r ")).toEqual([
      { scheme: "bearer", params: { realm: "https://x/token", service: "reg", scope: "a b" } },
      { scheme: "basic", params: { realm: "r" } }
    ])
  })

  it("unquoted values, even ones that are not tokens", () => {
    expect(parseChallenges("Bearer realm=https://x/token,service=registry.example.com,error=invalid_token")).toEqual([
      { scheme: "bearer", params: { realm: "https://x/token", service: "registry.example.com", error: "invalid_token" } }
    ])
  })

  it("keeps parameters named like Object.prototype members as own properties", () => {
    const [challenge] = parseChallenges("Bearer __proto__=\"x\", constructor=\"y\", realm=\"r\"")
    expect(Object.keys(challenge!.params).sort()).toEqual(["__proto__", "constructor", "realm"])
    expect(Object.getOwnPropertyDescriptor(challenge!.params, "__proto__")?.value).toBe("x")
    expect(challenge!.params["constructor"]).toBe("y")
    expect(Object.getPrototypeOf(challenge!.params)).toBe(Object.prototype)
  })

  it("empty, blank and malformed headers", () => {
    expect(parseChallenges("")).toEqual([])
    expect(parseChallenges("   ,, , ")).toEqual([])
    expect(parseChallenges("Bearer realm=\"unterminated")).toEqual([
      { scheme: "bearer", params: { realm: "unterminated" } }
    ])
    expect(parseChallenges("Bearer realm=\"trailing backslash\\")).toEqual([
      { scheme: "bearer", params: { realm: "trailing backslash\\" } }
    ])
    // a parameter before any scheme has no challenge to belong to: no crash, no params invented
    expect(parseChallenges("=\"x\"").every((c) => Object.keys(c.params).length === 0)).toBe(true)
  })
})

describe("challengeScopes", () => {
  const scopesOf = (header: string) => challengeScopes(parseChallenges(header)[0]!)

  it("one scope", () => {
    expect(scopesOf("Bearer realm=\"r\",service=\"s\",scope=\"repository:tfstate/demo:push,pull\"")).toEqual([
      "repository:tfstate/demo:push,pull"
    ])
  })

  it("several space-separated scopes, extra spaces ignored", () => {
    expect(
      scopesOf("Bearer realm=\"r\",scope=\"repository:a/b:pull  repository:c/d:pull,push registry:catalog:* \"")
    ).toEqual(["repository:a/b:pull", "repository:c/d:pull,push", "registry:catalog:*"])
  })

  it("no scope", () => {
    expect(scopesOf("Bearer realm=\"r\"")).toEqual([])
    expect(scopesOf("Bearer realm=\"r\",scope=\"\"")).toEqual([])
    expect(challengeScopes({ scheme: "basic", params: {} })).toEqual([])
  })
})

// Arbitraries ---------------------------------------------------------------------------------

const token = FastCheck.stringMatching(/^[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,12}$/)
const quote = (value: string) => `"${value.replace(/["\\]/g, (c) => `\\${c}`)}"`
const challenge = FastCheck.record({
  scheme: token,
  params: FastCheck.uniqueArray(FastCheck.tuple(token, FastCheck.string({ unit: "binary", maxLength: 20 })), {
    selector: ([name]) => name.toLowerCase(),
    maxLength: 4
  }),
  separator: FastCheck.constantFrom(",", ", ", " , ", ",\t"),
  equals: FastCheck.constantFrom("=", " = ", "\t=")
})

/** Strings made of the pieces the parser reacts to, so that random input reaches its corners. */
const headerish = FastCheck.array(
  FastCheck.oneof(
    FastCheck.constantFrom("Bearer", "Basic", "realm", "scope", "=", "\"", "\\", ",", " ", "\t", "\u0000", "é", "\uD83D"),
    token,
    FastCheck.string()
  ),
  { maxLength: 30 }
).map((parts) => parts.join(""))

describe("parseChallenges properties", () => {
  it.prop("never throws and always terminates", [FastCheck.oneof(FastCheck.string({ unit: "binary" }), headerish)], ([s]) => {
    const challenges = parseChallenges(s)
    return Array.isArray(challenges) &&
      challenges.every((c) =>
        c.scheme.length > 0 && c.scheme === c.scheme.toLowerCase() &&
        Object.values(c.params).every((v) => typeof v === "string") && challengeScopes(c).every((x) => x.length > 0)
      )
  }, { fastCheck: { numRuns: 2000 } })

  it.prop(
    "reads back any challenges written per RFC 7235",
    [FastCheck.array(challenge, { minLength: 1, maxLength: 4 })],
    ([challenges]) => {
      const header = challenges
        .map((c, i) =>
          (i === 0 ? "" : c.separator) + c.scheme +
          c.params.map(([name, value], j) => `${j === 0 ? " " : c.separator}${name}${c.equals}${quote(value)}`).join("")
        )
        .join("")
      const expected: Array<Challenge> = challenges.map((c) => ({
        scheme: c.scheme.toLowerCase(),
        params: Object.fromEntries(c.params.map(([name, value]) => [name.toLowerCase(), value]))
      }))
      expect(parseChallenges(header)).toEqual(expected)
    }
  )

  it("is linear on long adversarial input", () => {
    for (const header of [
      "Bearer " + "realm=\"".repeat(50_000),
      "Bearer realm=\"" + "\\\"".repeat(100_000),
      " ".repeat(200_000) + "Basic",
      "a=".repeat(100_000),
      ",".repeat(200_000)
    ]) {
      const start = performance.now()
      parseChallenges(header)
      expect(performance.now() - start).toBeLessThan(1000)
    }
  })
})
