import { defineCommand } from "citty"
import { VERSION } from "../../shared/version.ts"

export default defineCommand({
  meta: { name: "version", description: "Print the version" },
  run() {
    process.stdout.write(`dffmpeg ${VERSION}\n`)
  },
})
