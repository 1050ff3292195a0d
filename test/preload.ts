// Runs before any test file: tests must never pick up a developer's own dffmpeg configs or env.
for (const k of Object.keys(process.env)) if (k.startsWith("DFFMPEG_")) delete process.env[k]
