import { UsageError } from "../../shared/errors.ts"
import { verb } from "../command.ts"
import { SHELLS, commandTree } from "../completion.ts"
import { root } from "../root.ts"

const names = Object.keys(SHELLS) as (keyof typeof SHELLS)[]

export default verb(
  "completion",
  "Print a shell completion script for commands, subcommands and flags: source <(dffmpeg completion bash), or dffmpeg completion fish | source",
  { shell: { type: "positional", description: names.join(" | "), required: true } },
  async (args) => {
    const shell = names.find((n) => n === args.shell)
    if (!shell) throw new UsageError(`unknown shell ${JSON.stringify(args.shell)}: use one of ${names.join(", ")}`)
    process.stdout.write(SHELLS[shell](await commandTree(root)))
  },
)
