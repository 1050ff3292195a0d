import { verb } from "../command.ts"
import { VERSION } from "../../shared/version.ts"

export default verb("version", "Print the version", {}, () => void process.stdout.write(`dffmpeg ${VERSION}\n`))
