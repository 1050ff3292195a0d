import { defineCommand } from "citty"
import { VERSION } from "../shared/version.ts"

export const root = defineCommand({
  meta: {
    name: "dffmpeg",
    version: VERSION,
    description:
      "Distributed FFmpeg: run ffmpeg/ffprobe on a pool of workers as if they ran locally. Symlink this binary as ffmpeg or ffprobe to use it as a drop-in proxy.",
  },
  subCommands: {
    coordinator: () => import("./commands/coordinator.ts").then((m) => m.default),
    worker: () => import("./commands/worker.ts").then((m) => m.default),
    client: () => import("./commands/client.ts").then((m) => m.default),
    admin: () => import("./commands/admin/index.ts").then((m) => m.default),
    version: () => import("./commands/version.ts").then((m) => m.default),
  },
})
