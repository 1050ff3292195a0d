import { defineCommandStrict } from "../args.ts"
import { VERSION } from "../../shared/version.ts"

export default defineCommandStrict({
  meta: { name: "version", description: "Print the version" },
  run() {
    process.stdout.write(`dffmpeg ${VERSION}\n`)
  },
})
