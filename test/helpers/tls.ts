import { mkdirSync, writeFileSync } from "node:fs"
import { join } from "node:path"

export interface TestPki {
  /** CA certificate that signed `cert` (for `coordinator.ca_file`). */
  ca: string
  /** Server certificate for 127.0.0.1 (IP subjectAltName only) and its key (for `tls:`). */
  cert: string
  key: string
  /** Another CA that signed nothing here: a client trusting it must refuse the coordinator. */
  wrongCa: string
}

function openssl(args: string[], cwd: string) {
  const p = Bun.spawnSync(["openssl", ...args], { cwd, stdout: "pipe", stderr: "pipe" })
  if (p.exitCode !== 0) throw new Error(`openssl ${args.join(" ")} failed: ${p.stderr.toString()}`)
}

/** A throw-away CA and a 127.0.0.1 server certificate made with Debian's openssl CLI, in `dir`. */
export function makePki(dir: string): TestPki {
  mkdirSync(dir, { recursive: true })
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
  for (const name of ["ca", "wrong-ca"])
    openssl(
      [
        "req",
        "-x509",
        ...ec,
        "-keyout",
        `${name}.key`,
        "-out",
        `${name}.pem`,
        "-days",
        "2",
        "-subj",
        `/CN=dffmpeg test ${name}`,
      ],
      dir,
    )
  openssl(["req", ...ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=dffmpeg test coordinator"], dir)
  writeFileSync(
    join(dir, "server.ext"),
    "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
  )
  openssl(
    [
      "x509",
      "-req",
      "-in",
      "server.csr",
      "-CA",
      "ca.pem",
      "-CAkey",
      "ca.key",
      "-CAcreateserial",
      "-out",
      "server.pem",
      "-days",
      "2",
      "-extfile",
      "server.ext",
    ],
    dir,
  )
  return {
    ca: join(dir, "ca.pem"),
    cert: join(dir, "server.pem"),
    key: join(dir, "server.key"),
    wrongCa: join(dir, "wrong-ca.pem"),
  }
}
