import * as v from "valibot"
import { availableParallelism } from "node:os"
import { LOCAL_RANGES, parseCidr } from "../net/cidr.ts"
import { AbsPath, EnvNames, Identity, LogFormat, LogLevel, Port, Seconds, VarName } from "./schema.ts"
import { Transports } from "./transports.ts"
import { CapName, Labels } from "../protocol/capabilities.ts"

/**
 * Config schemas of the roles the CLI runs: coordinator, worker and admin. Kept apart from schema.ts so
 * the proxy, which loads only the client config, never bundles them.
 */

const CidrList = (fallback: string[]) =>
  v.optional(
    v.array(
      v.pipe(
        v.string(),
        v.check(
          (t) => parseCidr(t) !== undefined,
          (i) => `${JSON.stringify(i.input)} is not an IP address or CIDR range`,
        ),
      ),
    ),
    fallback,
  )
const BinaryName = v.pipe(
  v.string(),
  v.regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/, "binary names are 1-64 letters, digits, '_', '-' or '.'"),
)

const Bytes = (min: number, max: number) => v.pipe(v.number(), v.integer(), v.minValue(min), v.maxValue(max))
const Count = (min: number, max: number) => v.pipe(v.number(), v.integer(), v.minValue(min), v.maxValue(max))

/** Quotas and resource limits of the coordinator (issue: bounded memory under any load). */
export const Limits = v.optional(
  v.object({
    /** Total UTF-8 bytes of a job's arguments (plus cwd and path names). */
    max_args_bytes: v.optional(Bytes(1024, 64 * 1024 * 1024), 256 * 1024),
    /** Most arguments one job may have. */
    max_args_count: v.optional(Count(1, 100_000), 4096),
    /** Jobs one client identity may have queued or assigned at once (not yet running). */
    max_queued_per_client: v.optional(Count(1, 1_000_000), 500),
    /** Jobs one client identity may have not yet finished (queued, assigned or running). */
    max_active_per_client: v.optional(Count(1, 1_000_000), 1000),
    /** Caller stdin bytes one job may forward to its worker. */
    max_stdin_bytes: v.optional(Bytes(0, 1024 * 1024 * 1024 * 1024), 1024 * 1024 * 1024),
    /** Largest page of a listing (jobs, events); larger `limit`s are clamped, and cursors page on. */
    max_page_size: v.optional(Count(1, 10_000), 200),
    /** Largest log tail (`admin jobs logs --tail`, the dashboard's log view), in bytes. */
    max_log_tail_bytes: v.optional(Bytes(1024, 256 * 1024 * 1024), 1024 * 1024),
    /** Largest signed request body; a larger Content-Length gets 413 before the body is read. */
    max_body_bytes: v.optional(Bytes(64 * 1024, 256 * 1024 * 1024), 8 * 1024 * 1024),
    /**
     * Request body bytes read at once, in all, before their signatures are verified (a caller who knows
     * an identity's name but not its key can make the coordinator read up to a route's cap); past it
     * new bodies get 503 and are retried. Never below max_body_bytes.
     */
    max_unverified_body_bytes: v.optional(Bytes(1024 * 1024, 4 * 1024 * 1024 * 1024), 64 * 1024 * 1024),
    /** Open dashboard live connections (SSE) in all, and per client address. */
    max_dashboard_connections: v.optional(Count(1, 100_000), 64),
    max_dashboard_connections_per_ip: v.optional(Count(1, 100_000), 8),
    /** Open long polls per worker identity (a worker keeps one). */
    max_polls_per_worker: v.optional(Count(1, 1000), 2),
    /** Open output streams per job (callers re-attaching, admins following its log). */
    max_streams_per_job: v.optional(Count(1, 1000), 8),
    /** Open connections held by one identity in all (polls, streams). */
    max_streams_per_identity: v.optional(Count(1, 100_000), 256),
  }),
  {},
)

/**
 * How much of a job's output the coordinator keeps (issue 11 item 6): output flows worker → caller
 * through the database, which holds only what resuming needs, never a whole binary pipe.
 */
export const Relay = v.optional(
  v.object({
    /**
     * MiB of an attached job's output its caller has not acknowledged yet; an upload that would pass it
     * waits for an acknowledgement, which back-pressures the worker and, through its backlog, ffmpeg.
     */
    window_mb: v.optional(Count(1, 4096), 64),
    /** Longest an upload into a full window waits for an acknowledgement before it is answered "retry". */
    window_wait_seconds: v.optional(Seconds(0.05, 20), 5),
    /** KiB of a job's stderr kept after it was acknowledged (logs, the dashboard, `lastOutputBytes`). */
    stderr_tail_kb: v.optional(Count(1, 256 * 1024), 1024),
    /**
     * MiB of output a detached job (no caller to acknowledge it) keeps; past it stdout is dropped and
     * stderr kept as its last stderr_tail_kb, behind a `dffmpeg: output truncated` marker.
     */
    detached_output_mb: v.optional(Count(1, 1024 * 1024), 64),
    /**
     * MiB of attached stdout the coordinator holds in memory, all jobs together, instead of writing it to
     * its database and reading it back (workers keep it until it is durable); past it, output is stored.
     * 0 stores everything. Default: 256 on SQLite, 0 on a server database (`heldBudgetMb`).
     */
    memory_mb: v.optional(Count(0, 64 * 1024)),
  }),
  {},
)

const PriorityName = v.picklist(["interactive", "normal", "batch"], "must be interactive, normal or batch")
const ClientName = v.pipe(
  v.string(),
  v.regex(/^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/, "client identities are 1-64 letters, digits, '_' or '-'"),
)

/**
 * A client rule: when a job matches every condition of `match`, it gets `priority` (the first matching
 * rule that sets one wins, over the identity's own) and needs `labels` (those of every matching rule).
 */
const SchedulingRule = v.pipe(
  v.strictObject({
    match: v.pipe(
      v.strictObject({
        /** The submitting identity, or one of several. */
        identity: v.optional(v.union([ClientName, v.pipe(v.array(ClientName), v.minLength(1))])),
        binary: v.optional(BinaryName),
        /** Arguments that appear in this order, next to each other (`[-f, hls]`). */
        args_contain: v.optional(
          v.pipe(v.array(v.pipe(v.string(), v.maxLength(4096))), v.minLength(1), v.maxLength(64)),
        ),
      }),
      v.check((m) => Object.keys(m).length > 0, "a rule's match needs identity, binary or args_contain"),
    ),
    priority: v.optional(PriorityName),
    labels: v.optional(Labels),
  }),
  v.check((r) => r.priority !== undefined || r.labels !== undefined, "a rule must set priority or labels"),
)
export type SchedulingRule = v.InferOutput<typeof SchedulingRule>

/**
 * How queued jobs are ordered and placed (issue 12, docs/scheduling.md): probes go first in their own
 * slots; transcodes by priority with aging.
 */
export const Scheduling = v.optional(
  v.object({
    /** Default priority per client identity (`jellyfin: interactive`); others are `normal`. */
    priorities: v.optional(v.record(ClientName, PriorityName), {}),
    /** Client rules matching argument patterns, in order (`{match: {args_contain: [-f, hls]}, priority: interactive}`). */
    rules: v.optional(v.pipe(v.array(SchedulingRule), v.maxLength(256, "at most 256 rules")), []),
    /**
     * What one priority level is worth in waiting: a `normal` job queued this long before an
     * `interactive` one goes first; a `batch` one twice this long. 0: first come, first served.
     */
    aging_seconds: v.optional(Seconds(0, 7 * 86400), 60),
    /** A worker whose poll connection closed and that did not poll again within this long gets no new work until it does. */
    poll_gone_seconds: v.optional(Seconds(0.05, 3600), 2),
  }),
  {},
)

/** The store engines (`mariadb` is another name for `mysql`). */
export const DatabaseEngines = { available: ["sqlite", "postgres", "mysql", "mariadb"] } as const

const SqliteDatabase = v.object({
  engine: v.optional(v.literal("sqlite"), "sqlite"),
  /** The database file, relative to the config file, or `:memory:`. */
  path: v.optional(v.pipe(v.string(), v.minLength(1)), "./dffmpeg.db"),
  /** Opens a file on NFS, SMB/CIFS, FUSE... anyway (refused otherwise: SQLite corrupts there). */
  allow_network_filesystem: v.optional(v.boolean()),
})

/** `ssl`: off, on with the system's CAs, or with a CA file and/or without verifying the server. */
const DatabaseSsl = v.union(
  [
    v.boolean(),
    v.object({
      /** PEM file of the CA that signs the server's certificate, relative to the config file. */
      ca_file: v.optional(v.pipe(v.string(), v.minLength(1))),
      /** Whether the server's certificate must verify (default true; false only for tests). */
      reject_unauthorized: v.optional(v.boolean(), true),
    }),
  ],
  "must be true, false or a mapping (ca_file, reject_unauthorized)",
)

/** What a server database shares between PostgreSQL and MySQL/MariaDB: where it is and how to log in. */
const serverDatabase = <E extends v.GenericSchema<unknown, "postgres" | "mysql">>(engine: E) =>
  v.object({
    engine,
    /** `postgres://user:pass@host:5432/db` or `mysql://user:pass@host:3306/db`; the keys below override its parts. */
    url: v.optional(
      v.pipe(
        v.string(),
        v.check((u) => URL.canParse(u), "is not a URL"),
      ),
    ),
    host: v.optional(v.pipe(v.string(), v.minLength(1))),
    port: v.optional(Port),
    user: v.optional(v.pipe(v.string(), v.minLength(1))),
    password: v.optional(v.string()),
    /** A file holding the password (its first line), relative to the config file; wins over `password`. */
    password_file: v.optional(v.pipe(v.string(), v.minLength(1))),
    database: v.optional(v.pipe(v.string(), v.minLength(1))),
    ssl: v.optional(DatabaseSsl),
    /** Connections this coordinator keeps open to the database at most. */
    pool_size: v.optional(Count(1, 200), 10),
    /** Longest a connection attempt waits before the request is answered 503. */
    connect_timeout_seconds: v.optional(Seconds(0.1, 120), 5),
    /**
     * How often a coordinator looks for changes others committed where the engine cannot push them
     * (MySQL/MariaDB: no LISTEN/NOTIFY): the longest a wake-up from another coordinator waits.
     */
    notify_interval_ms: v.optional(Count(5, 60_000), 50),
  })

const PostgresDatabase = serverDatabase(v.literal("postgres"))
const MysqlDatabase = serverDatabase(
  v.pipe(
    v.picklist(["mysql", "mariadb"]),
    v.transform((): "mysql" => "mysql"),
  ),
)

/** Why `database` was refused. */
function engineMessage(issue: v.BaseIssue<unknown>): string {
  if (issue.expected === "Object") return "must be a mapping (engine, path or url)"
  return `unknown engine ${JSON.stringify(issue.input)}; available: ${DatabaseEngines.available.join(", ")}`
}

/** `database`, one shape per engine (a discriminated union on `engine`, which defaults to sqlite). */
export const Database = v.optional(
  v.variant("engine", [SqliteDatabase, PostgresDatabase, MysqlDatabase], engineMessage),
  {},
)
export type DatabaseConfig = v.InferOutput<typeof Database>

/**
 * `relay.memory_mb` as it applies: what the config says, else 256 MiB on SQLite (one coordinator) and
 * nothing on a server database. Payloads held in one coordinator's memory cannot be served by another:
 * a caller streaming from coordinator B while the worker uploads to A would wait for rows only A can
 * fill, and a job ended through B would lose them (docs/protocol.md, "Held output"). Set it on a server
 * database only where a single coordinator serves it.
 */
export function heldBudgetMb(cfg: { database: DatabaseConfig; relay: { memory_mb?: number } }): number {
  return cfg.relay.memory_mb ?? (cfg.database.engine === "sqlite" ? 256 : 0)
}

export const CoordinatorConfig = v.object({
  host: v.optional(v.string(), "127.0.0.1"),
  port: v.optional(Port, 8000),
  path_base: v.optional(v.string(), ""),
  database: Database,
  /** The brokers this coordinator serves the API on besides HTTP (docs/configuration.md, "Transports"). */
  transports: Transports,
  /**
   * What carries wake-ups to the other coordinators of the database: its own (`database`: LISTEN/NOTIFY
   * on PostgreSQL, the change sequence on MySQL/MariaDB) or a broker of `transports.enabled_transports`.
   */
  notifier: v.optional(v.picklist(["database", "mqtt", "rabbitmq"]), "database"),
  allowed_binaries: v.optional(v.array(BinaryName), ["ffmpeg", "ffprobe"]),
  /** Longest a worker's poll is held open before it answers with no work. */
  poll_wait_seconds: v.optional(v.pipe(v.number(), v.minValue(0.05), v.maxValue(120)), 25),
  /** How often workers report the jobs they hold, and attached callers are checked for. */
  heartbeat_interval: v.optional(Seconds(0.05, 3600), 5),
  /**
   * How long an attached job's caller may take to re-open its last closed stream before it counts as gone
   * (killed, crashed) and its ffmpeg is killed. A live caller re-opens at once; raise it for callers on
   * links that take longer to reconnect.
   */
  caller_grace_seconds: v.optional(Seconds(0.05, 60), 0.3),
  /** How often workers re-register (refreshing their binaries, healthy paths and state). */
  registration_interval: v.optional(Seconds(0.05, 3600), 15),
  /** After SIGTERM, /health answers 503 for this long before the coordinator stops (load balancers). */
  shutdown_delay_seconds: v.optional(Seconds(0, 3600), 0),
  janitor: v.optional(
    v.object({
      /** Period of the janitor's run (± jitter). */
      interval: v.optional(Seconds(0.05, 3600), 10),
      jitter: v.optional(Seconds(0, 60), 0.5),
      /** A worker is offline when not heard from for max(registration_interval, heartbeat_interval) × this. */
      worker_threshold_factor: v.optional(v.pipe(v.number(), v.minValue(1), v.maxValue(100)), 1.5),
      /** A running job's worker, or an attached caller, is gone after heartbeat_interval × this. */
      job_heartbeat_threshold_factor: v.optional(v.pipe(v.number(), v.minValue(1), v.maxValue(100)), 2.5),
      /** Longest a job may stay assigned without its worker starting it; then it is re-queued. */
      job_assignment_timeout: v.optional(Seconds(0.05, 3600), 10),
      /** A queued job that no online worker could run fails after this long. */
      job_pending_timeout: v.optional(Seconds(0.05, 86400 * 30), 30),
      /**
       * A probe (ffprobe, info commands: the probe lane) that no worker took within this long fails, so a
       * media server's playback start or library scan is told at once rather than after job_pending_timeout.
       */
      probe_pending_timeout: v.optional(Seconds(0.05, 3600), 5),
      /** Finished jobs (with their output) and long-offline workers are deleted after this long. */
      retention_hours: v.optional(v.pipe(v.number(), v.minValue(0), v.maxValue(24 * 3650)), 168),
    }),
    {},
  ),
  /**
   * The worker whose ffmpeg answers info commands (`-version`, `-encoders`, `-h ...`) while it is online
   * and has the binary; otherwise the online worker with the widest tools (docs/capabilities.md).
   */
  reference_worker: v.optional(
    v.pipe(v.string(), v.regex(/^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/, "must be 1-64 letters, digits, '_' or '-'")),
  ),
  /** Info-command answers kept in memory (per reference worker, its tools and the arguments; at most 64 MiB in all); least recently used go first. 0: no cache. */
  info_cache_entries: v.optional(Count(0, 100_000), 256),
  /** Serves the web dashboard at `/` (under path_base). */
  web_dashboard_enabled: v.optional(v.boolean(), true),
  /** Peers that may load the dashboard (default: loopback and private ranges). */
  allowed_dashboard_ips: CidrList(LOCAL_RANGES),
  /** When true the dashboard also asks for an admin identity (name and key) and keeps a session cookie. */
  dashboard_require_login: v.optional(v.boolean(), false),
  /** Hours a dashboard sign-in lasts. */
  dashboard_session_hours: v.optional(v.pipe(v.number(), v.minValue(0.01), v.maxValue(24 * 365)), 12),
  /**
   * The dashboard's address as browsers reach it (`https://ffmpeg.example.org/dffmpeg/`): the base of the
   * links `dffmpeg admin dashboard-link` prints. Unset: http(s)://host:port/path_base/.
   */
  dashboard_url: v.optional(
    v.pipe(
      v.string(),
      v.maxLength(2048),
      v.check(
        (s) => /^https?:\/\/[^/?#\s]+(\/[^?#\s]*)?$/.test(s),
        "must be an http:// or https:// URL without ? or #",
      ),
    ),
  ),
  /** Peers that may scrape /metrics (default: loopback and private ranges). */
  allowed_metrics_ips: CidrList(LOCAL_RANGES),
  /**
   * Reverse proxies whose X-Forwarded-For is believed when checking the allow-lists; from any other
   * peer the header is ignored. Empty: the socket's address is always used.
   */
  trusted_proxies: CidrList(["127.0.0.1", "::1"]),
  /** Serve HTTPS instead of HTTP (PEM files). */
  tls: v.optional(
    v.object({
      cert_file: v.pipe(v.string(), v.minLength(1)),
      key_file: v.pipe(v.string(), v.minLength(1)),
    }),
  ),
  /**
   * The coordinator secret (32 random bytes, base64) that encrypts every stored key (AES-256-GCM). Created
   * 0600 on first start; the coordinator refuses to start when it is readable by others. Default: beside
   * the database, `<database path>.secret`.
   */
  secret_key_file: v.optional(v.pipe(v.string(), v.minLength(1))),
  limits: Limits,
  relay: Relay,
  scheduling: Scheduling,
  log_level: LogLevel,
  log_format: LogFormat,
  /** One log line per HTTP request answered (method, path, status, ms, identity, address, bytes); off by default. */
  access_log: v.optional(v.boolean(), false),
})
export type CoordinatorConfig = v.InferOutput<typeof CoordinatorConfig>

/** Names a worker's config takes out of what it detected (one list per kind, for every binary). */
const Removal = v.optional(v.array(CapName), [])
export const RemoveCapabilities = v.optional(
  v.strictObject({
    encoders: Removal,
    decoders: Removal,
    /** Also takes out the hardware device type of the same name (`cuda`, `vaapi`). */
    hwaccels: Removal,
    /** Also takes out the hwaccel of the same name. */
    hw_devices: Removal,
    filters: Removal,
    muxers: Removal,
    demuxers: Removal,
  }),
  {},
)
export type RemoveCapabilities = v.InferOutput<typeof RemoveCapabilities>

/** Argument values, whole, as a profile matches and writes them (not empty, one line). */
const ProfileValue = v.pipe(
  v.string(),
  v.minLength(1, "must not be empty"),
  v.maxLength(4096, "at most 4096 characters"),
  v.regex(/^[^\u0000-\u001f\u007f]*$/, "must hold no control characters"),
)
const ProfileTable = v.pipe(
  v.record(ProfileValue, ProfileValue),
  v.check((r) => Object.keys(r).length >= 1 && Object.keys(r).length <= 256, "1-256 entries"),
)
/**
 * One argument profile rule (worker/profiles.ts): option values equal to a key of `replace` become its
 * value; option values starting with a key of `replace_prefix` get that start replaced. Only values of
 * options (`-c:v h264_nvenc`, `-vaapi_device /dev/dri/renderD128`), never option names, inputs or outputs;
 * `options` narrows it to values of those options (names without `-` or stream specifier), `binary` to one
 * binary.
 */
export const Profile = v.pipe(
  v.strictObject({
    binary: v.optional(BinaryName),
    options: v.optional(
      v.pipe(
        v.array(v.pipe(v.string(), v.regex(/^[A-Za-z0-9_]{1,64}$/, "option names without '-' or stream specifier"))),
        v.minLength(1, "list at least one option, or leave options out"),
      ),
    ),
    replace: v.optional(ProfileTable),
    replace_prefix: v.optional(ProfileTable),
  }),
  v.check((p) => !!p.replace || !!p.replace_prefix, "a profile needs replace or replace_prefix"),
)
export type Profile = v.InferOutput<typeof Profile>

export const WorkerConfig = v.object({
  ...Identity,
  binaries: v.optional(v.record(BinaryName, v.pipe(v.string(), v.minLength(1))), {
    ffmpeg: "ffmpeg",
    ffprobe: "ffprobe",
  }),
  paths: v.optional(v.record(VarName, AbsPath), {}),
  passthrough_paths: v.optional(v.array(AbsPath), ["/dev/null"]),
  max_jobs: v.optional(v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(1024)), availableParallelism()),
  /** Slots for probes (ffprobe, info commands), apart from max_jobs, so probes never wait behind transcodes. */
  max_probe_jobs: v.optional(v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(256)), 4),
  /** Stopping a job (cancel, forced shutdown): `q` on stdin, SIGTERM after this long, then SIGKILL. */
  cancel_term_after_seconds: v.optional(Seconds(0, 600), 2),
  cancel_kill_after_seconds: v.optional(Seconds(0, 600), 5),
  /** A small batch of output waits this long on an idle line, so a job's last output and exit share one upload. */
  output_linger_ms: v.optional(v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(100)), 10),
  /** After the first SIGTERM, keep refusing new work for at least this long before exiting. */
  min_drain_time_seconds: v.optional(Seconds(0, 3600), 5),
  /** Path checks (stat, mount point) that take longer than this count as unhealthy. */
  mount_check_timeout_seconds: v.optional(Seconds(0.05, 600), 5),
  /** How often path variables are re-checked; a change is re-advertised at once. */
  mount_check_interval_seconds: v.optional(Seconds(0.05, 3600), 5),
  mount_management: v.optional(
    v.object({
      /** Run a mount's recovery command when it is unhealthy. */
      recovery: v.optional(v.boolean(), true),
      mounts: v.optional(
        v.array(
          v.union([
            AbsPath,
            v.object({
              path: AbsPath,
              /** argv run (no shell) to bring the mount back, e.g. [systemctl, start, mnt-media.mount]. */
              recovery_command: v.optional(v.array(v.string())),
            }),
          ]),
        ),
        [],
      ),
    }),
    {},
  ),
  /**
   * How jobs are confined: `bwrap` runs every ffmpeg in a bubblewrap sandbox that sees only the job's
   * mapped roots, its scratch directory, the binary and the system files it needs; a worker that cannot
   * sandbox refuses to start. `none` runs ffmpeg unconfined (warned at every start, shown to operators).
   */
  sandbox: v.optional(v.picklist(["bwrap", "none"]), "bwrap"),
  /** Unprivileged user (name, or uid[:gid]) ffmpeg runs as when the worker runs as root. */
  run_as: v.optional(v.pipe(v.string(), v.minLength(1))),
  /** Allow ffmpeg to run as root (worker running as root with no run_as). */
  allow_root: v.optional(v.boolean(), false),
  /** Device nodes or folders the sandbox exposes (e.g. /dev/dri for VAAPI/QSV, /dev/nvidia0, /dev/nvidiactl). */
  devices: v.optional(v.array(AbsPath), []),
  /** Extra read-only system paths visible in the sandbox (beyond /usr, /etc/fonts, ... ), e.g. an ffmpeg outside /usr. */
  sandbox_ro_paths: v.optional(v.array(AbsPath), []),
  /**
   * Check every argument before spawning (protocols, relative paths, embedded paths, attachments). Only
   * turn off to test the sandbox alone; logged as a warning at start.
   */
  argument_policy: v.optional(v.boolean(), true),
  /** Let jobs use network protocols (http, https, tcp, udp, rtmp, rtsp, srt, ...); off by default (no network in the sandbox). */
  allow_network: v.optional(v.boolean(), false),
  /** With allow_network: only these hosts (name, IP or CIDR, optional :port); empty means any host. */
  allowed_hosts: v.optional(v.array(v.pipe(v.string(), v.minLength(1))), []),
  /**
   * The caller's environment variables a job may set (names, or prefixes ending in `*`); others are
   * dropped and logged. PATH, HOME, TMPDIR and LD_* are never taken from a caller.
   */
  allowed_env: EnvNames,
  /** Operator labels (`gpu: nvidia`) client rules can ask for; shown with the worker. */
  labels: v.optional(Labels, {}),
  /** Tie-break between equally loaded workers: a higher weight gets the job first. */
  weight: v.optional(v.pipe(v.number(), v.minValue(0.01), v.maxValue(1000)), 1),
  /** Detected capabilities this worker must not advertise (a flaky encoder, a GPU kept for something else). */
  remove_capabilities: RemoveCapabilities,
  /** Longest one capability command (a listing, a hwaccel's initialisation) may take; it then counts as failed. */
  capability_timeout_seconds: v.optional(Seconds(0.5, 600), 10),
  /** Argument rewrites applied before spawning, after path mapping and before the argument policy (in order). */
  profiles: v.optional(v.pipe(v.array(Profile), v.maxLength(64, "at most 64 profiles")), []),
  log_level: LogLevel,
  log_format: LogFormat,
})
export type WorkerConfig = v.InferOutput<typeof WorkerConfig>

/** `dffmpeg admin` from any host: an admin identity and where the coordinator is. */
export const AdminConfig = v.object({
  ...Identity,
  log_level: LogLevel,
})
export type AdminConfig = v.InferOutput<typeof AdminConfig>
