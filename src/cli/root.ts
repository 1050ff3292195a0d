import { defineCommand } from "citty"
import { VERSION } from "../shared/version.ts"
import { lazy } from "./command.ts"

export const root = defineCommand({
  meta: {
    name: "dffmpeg",
    version: VERSION,
    description:
      "Distributed FFmpeg: run ffmpeg/ffprobe on a pool of workers as if they ran locally. Symlink this binary as ffmpeg or ffprobe to use it as a drop-in proxy.",
  },
  subCommands: {
    coordinator: lazy(() => import("./commands/coordinator.ts")),
    worker: lazy(() => import("./commands/worker.ts")),
    client: lazy(() => import("./commands/client.ts")),
    admin: lazy(() => import("./commands/admin/index.ts")),
    config: lazy(() => import("./commands/config.ts")),
    version: lazy(() => import("./commands/version.ts")),
    completion: lazy(() => import("./commands/completion.ts")),
  },
})
