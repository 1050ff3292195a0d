/** Waits `ms` (nothing when ≤ 0), or less when `signal` aborts; never rejects. */
export function pause(ms: number, signal?: AbortSignal): Promise<void> {
  if (ms <= 0 || signal?.aborted) return Promise.resolve()
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer)
      signal?.removeEventListener("abort", done)
      resolve()
    }
    const timer = setTimeout(done, ms)
    signal?.addEventListener("abort", done, { once: true })
  })
}

/** Jittered exponential backoff: 100 ms doubling to `max`, ±25 %. */
export function backoff(attempt: number, max = 5000): number {
  const d = Math.min(max, 100 * 2 ** Math.min(attempt, 16))
  return d * (0.75 + Math.random() * 0.5)
}
