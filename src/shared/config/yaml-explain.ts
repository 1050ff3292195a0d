import { parseDocument } from "yaml"

/**
 * A precise message (with line and column) for YAML that Bun's built-in parser rejected. Lives in the
 * CLI bundle: the proxy loads it only when its config is broken.
 */
export function explainYaml(text: string): string | undefined {
  const first = parseDocument(text).errors[0]
  return first?.message.split("\n")[0]
}
