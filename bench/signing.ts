#!/usr/bin/env bun
/**
 * Cost of response signing (issue 9, item 9): the HMACs the coordinator adds to every reply and frame
 * chunk, and the receiver's verification, in-process. Prints a Markdown table (docs/performance.md).
 * Run: `bun run bench:signing`.
 */
import { cpus } from "node:os"
import { STREAMED, StreamSealer, StreamVerifier, responseMac, signResponse } from "../src/shared/auth/response.ts"
import { sha256Hex } from "../src/shared/auth/hmac.ts"
import { Kind, encodeFrame } from "../src/shared/protocol/frames.ts"

const key = Buffer.alloc(32, 1)
const head = { nonce: "bench-nonce-0123456789", status: 200, contentType: "application/json" }
const assignment = JSON.stringify({
  jobs: [
    {
      id: "01ARZ3NDEKTSV4RRFFQ69G5FAV",
      epoch: 1,
      binary: "ffprobe",
      args: ["-v", "error", "-print_format", "json", "-show_format", "-show_streams", "$Media/film.mkv"],
      paths: ["Media"],
      cwd: null,
      stdin: false,
    },
  ],
})

/**
 * Median CPU µs (user + system, of this process) per call of `fn` over `rounds` rounds of `n` calls: CPU
 * time rather than wall time, so that other load on a shared machine does not inflate the figure.
 */
function time(n: number, fn: () => void, rounds = 7): number {
  const per: number[] = []
  for (let r = 0; r < rounds; r++) {
    const t = process.cpuUsage()
    for (let i = 0; i < n; i++) fn()
    const d = process.cpuUsage(t)
    per.push((d.user + d.system) / n)
  }
  return per.sort((a, b) => a - b)[Math.floor(rounds / 2)]!
}

const rows: string[] = []
const sign = time(20_000, () => signResponse(key, head, assignment))
// What the receiver does for a reply with a body: hash it and compute both candidate MACs.
const verify = time(20_000, () => {
  responseMac(key, { ...head, bodyHash: STREAMED })
  responseMac(key, { ...head, bodyHash: sha256Hex(assignment) })
})
rows.push(
  `| JSON reply (${assignment.length} B: a poll answer with one assignment) | ${sign.toFixed(1)} | ${verify.toFixed(1)} |`,
)
for (const size of [64, 4096, 65536]) {
  const frame = encodeFrame(Kind.stdout, 1, new Uint8Array(size).fill(7))
  const n = size > 10_000 ? 2000 : 20_000
  // Warm-up (JIT), then a fresh chain: one sealer per stream, as the coordinator has.
  for (let w = 0; w < 2; w++) {
    const s = new StreamSealer(key, head)
    const ver = new StreamVerifier(key, responseMac(key, { ...head, bodyHash: STREAMED }), "bench")
    for (let k = 0; k < n / 10; k++) ver.push(s.seal(frame))
  }
  const sealer = new StreamSealer(key, head)
  const sealed: Uint8Array[] = []
  const seal = time(n, () => sealed.push(sealer.seal(frame)), 1)
  const v = new StreamVerifier(key, responseMac(key, { ...head, bodyHash: STREAMED }), "bench")
  let i = 0
  const check = time(n, () => v.push(sealed[i++]!), 1)
  rows.push(`| output chunk of ${size} B (one frame + its MAC frame) | ${seal.toFixed(1)} | ${check.toFixed(1)} |`)
}
console.log(
  `### ${new Date().toISOString().slice(0, 10)} — response signing, ${cpus().length} × ${cpus()[0]?.model}, Bun ${Bun.version}\n`,
)
console.log("CPU time per reply (median):\n")
console.log("| reply | sign (coordinator) µs | verify (receiver) µs |\n|---|---|---|")
console.log(rows.join("\n"))
