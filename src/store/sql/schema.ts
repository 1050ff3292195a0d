import type { Generated } from "kysely"

/** Table shapes as Kysely sees them. Times are integer milliseconds (UTC); JSON is stored as TEXT. */
export interface Database {
  meta: { key: string; value: string }
  users: { name: string; role: string; key: string; created_at: number }
  workers: {
    id: string
    binaries: string
    paths: string
    max_jobs: number
    version: string
    capabilities: string
    registered_at: number
    last_seen: number
    status: string
    token: string | null
    drain_requested: number
    self_draining: number
    /** Tools (capabilities.ts), JSON. */
    tools: string
    /** Labels, JSON. */
    labels: string
    weight: number
    max_probe_jobs: number
    /** When the worker's last poll connection closed; null while one is open. */
    poll_closed_at: number | null
    /** Goes one up whenever `tools` changes: readers keep parsed tools per (worker, revision). */
    tools_rev: number
    /** The transport negotiated at its last registration (http_polling, mqtt, rabbitmq). */
    transport: string
    /** The process serving the identity (WorkerInstance, JSON); null for a worker that sends none. */
    instance: string | null
    /** Its host's load from its last heartbeat that carried one (HostLoad, JSON). */
    host_load: string | null
  }
  jobs: {
    id: string
    requester: string
    binary: string
    args: string
    paths: string
    cwd: string | null
    /** The caller's environment for the process, JSON (`{}` for none). */
    env: string
    /** 1 when the caller decodes path tokens in the output (SubmitRequest.pathTokens). */
    path_tokens: number
    /** How many files the job carries (their content is in `job_files`). */
    files: number
    stdin: number
    status: string
    epoch: number
    worker_id: string | null
    out_seq: number
    exit_code: number | null
    exit_signal: string | null
    error: string | null
    created_at: number
    updated_at: number
    assigned_at: number | null
    started_at: number | null
    finished_at: number | null
    attached: number
    retries: number
    attempts: number
    excluded: string | null
    heartbeat_at: number | null
    client_seen_at: number | null
    cancel_requested_at: number | null
    progress: string | null
    /**
     * Characters of the arguments' whole JSON. `args` holds at most ARGS_HEAD_CHARS of it; when that
     * is not all of it, the whole JSON is in `job_args`, out of the row every state read touches.
     */
    args_chars: number
    /** Highest output position the attached caller acknowledged: stdout up to it is deleted. */
    acked_pos: number
    /** Output bytes a detached job dropped past relay.detached_output_mb. */
    out_dropped: number
    /** Position of the truncation marker of a detached job's output, null while it is whole. */
    trunc_pos: number | null
    /** probe | transcode */
    lane: string
    /** interactive | normal | batch */
    priority: string
    /** JobNeeds as JSON; null for none. */
    needs: string | null
    /** The only worker that may run the job, or null. */
    pin: string | null
    /** Place in its lane's queue: created_at minus the priority's head start (ms). */
    queue_key: number
    /** Workers never to be given the job again (JSON list), or null. */
    barred: string | null
    /** The submitter's key of its submission (unique per requester), or null. */
    submission: string | null
  }
  job_args: { job_id: string; args: string }
  /** A job's concat lists and filter scripts (JobFiles as JSON), for jobs whose `files` is not 0. */
  job_files: { job_id: string; files: string }
  job_events: {
    id: Generated<number>
    job_id: string
    at: number
    status: string
    epoch: number
    worker_id: string | null
    reason: string | null
  }
  job_output: {
    pos: Generated<number>
    job_id: string
    epoch: number
    seq: number
    stream: number
    data: Uint8Array
    /** Size of a payload held in the coordinator's memory instead of `data` (store/held.ts); 0 when stored. */
    held: Generated<number>
  }
  job_input: {
    job_id: string
    seq: number
    data: Uint8Array | null
    kind: number
  }
  /** Request nonces seen per signing identity (issue 14): a replay to any coordinator is refused. */
  nonces: { client_id: string; nonce: string; at: number }
  /** Coordinators on this database, for `dffmpeg admin db status`: each refreshes its row while it runs. */
  coordinators: {
    id: string
    host: string
    pid: number
    version: string
    url: string | null
    started_at: number
    seen_at: number
  }
  /**
   * Wake-ups for coordinators on an engine that cannot push them (MySQL/MariaDB,
   * coordinator/notify/mysql.ts): one row per notified topic, read by every coordinator after its last
   * id and pruned after a minute.
   */
  changes: { id: Generated<number>; topic: string; origin: string; at: number }
  /** One-time dashboard sign-in links (`dffmpeg admin dashboard-link`): the token's SHA-256, never the token. */
  sign_in_links: { token_hash: string; user_name: string; expires_at: number; created_at: number }
}
