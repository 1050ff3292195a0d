import { describe, expect, test } from "bun:test"
import {
  DummyDriver,
  Kysely,
  MysqlAdapter,
  MysqlIntrospector,
  MysqlQueryCompiler,
  PostgresAdapter,
  PostgresIntrospector,
  PostgresQueryCompiler,
  SqliteAdapter,
  SqliteIntrospector,
  SqliteQueryCompiler,
  type Dialect,
} from "kysely"
import { mysqlDialect, postgresDialect, sqliteDialect, type SqlDialect } from "./dialect.ts"
import type { Database } from "./schema.ts"

/** A Kysely that only compiles, in one engine's SQL: what each dialect writes, without its server. */
const compiler = (
  adapter: Dialect["createAdapter"],
  qc: Dialect["createQueryCompiler"],
  intro: Dialect["createIntrospector"],
) =>
  new Kysely<Database>({
    dialect: {
      createAdapter: adapter,
      createDriver: () => new DummyDriver(),
      createIntrospector: intro,
      createQueryCompiler: qc,
    },
  })

const engines: [SqlDialect, Kysely<Database>][] = [
  [
    sqliteDialect,
    compiler(
      () => new SqliteAdapter(),
      () => new SqliteQueryCompiler(),
      (db) => new SqliteIntrospector(db),
    ),
  ],
  [
    postgresDialect,
    compiler(
      () => new PostgresAdapter(),
      () => new PostgresQueryCompiler(),
      (db) => new PostgresIntrospector(db),
    ),
  ],
  [
    mysqlDialect,
    compiler(
      () => new MysqlAdapter(),
      () => new MysqlQueryCompiler(),
      (db) => new MysqlIntrospector(db),
    ),
  ],
]

describe("SQL dialects", () => {
  test.each(engines.map(([d, db]) => [d.name, d, db] as const))(
    "%s: insertIgnore skips a duplicate key in the engine's own words",
    (name, d, db) => {
      const q = db.insertInto("job_input").values({ job_id: "j", seq: 1, kind: 3, data: new Uint8Array(0) })
      const text = d.insertIgnore(q, ["job_id", "seq"]).compile().sql
      if (name === "mysql") expect(text).toStartWith("insert ignore into `job_input`")
      else expect(text).toEndWith('on conflict ("job_id", "seq") do nothing')
    },
  )

  test.each(engines.map(([d, db]) => [d.name, d, db] as const))(
    "%s: the column types a migration writes",
    (name, d, db) => {
      const ddl = d
        .serialKey(db.schema.createTable("t"), "id")
        .addColumn("s", d.str(26))
        .addColumn("b", d.blob())
        .addColumn("n", d.big())
        .compile().sql
      expect(ddl).toBe(
        {
          sqlite: 'create table "t" ("id" integer primary key autoincrement, "s" text, "b" blob, "n" integer)',
          postgres: 'create table "t" ("id" bigserial primary key, "s" text, "b" bytea, "n" bigint)',
          mysql: "create table `t` (`id` bigint primary key auto_increment, `s` varchar(26), `b` longblob, `n` bigint)",
        }[name],
      )
    },
  )
})
