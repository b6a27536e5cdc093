///usr/bin/env jbang "$0" "$@" ; exit $?
//SOURCES TestDatabase.java

import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.ResultSetMetaData;
import java.sql.SQLException;
import java.sql.Statement;
import java.time.OffsetDateTime;
import java.time.ZoneOffset;
import java.time.temporal.ChronoUnit;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;

/**
 * Checks the test database harness and the SQL fixture end to end: server start, fixture
 * database, sample data mix, rollup consistency and idempotency, the app role's password
 * login, and seeding speed. Exits 1 on any failure.
 *
 * Run from the repository root or from tests/: {@code ./jbang tests/TestDatabaseSelfCheck.java}
 * (set SELFCHECK_BIG_ROWS=0 to skip the 1,000,000-row timing).
 */
public class TestDatabaseSelfCheck {

    private static final int ROWS = 60_000;
    private static final int WORKSPACES = 8;
    private static final List<String> failures = new ArrayList<>();

    public static void main(String[] args) throws Exception {
        long t0 = System.nanoTime();
        TestDatabase tdb = TestDatabase.shared();
        System.out.printf("server: %s (ready in %.1f s)%n", tdb.describe(), secondsSince(t0));

        long t1 = System.nanoTime();
        String db = tdb.createDatabase("selfcheck");
        System.out.printf("fixture database %s created in %.2f s%n", db, secondsSince(t1));

        OffsetDateTime cutoff = OffsetDateTime.now(ZoneOffset.UTC).minusDays(1)
                .truncatedTo(ChronoUnit.SECONDS);
        long t2 = System.nanoTime();
        long seeded = tdb.seedSampleData(db, ROWS, cutoff, WORKSPACES);
        System.out.printf("seeded %,d rows (cutoff %s, %d workspaces) in %.2f s%n",
                seeded, cutoff, WORKSPACES, secondsSince(t2));
        check(seeded == ROWS, "seed_sample_usage returned " + seeded + ", expected " + ROWS);

        try (Connection c = tdb.adminConnection(db)) {
            reportMix(c, cutoff);
            reportWorkspaces(c);
            checkHourly(c, "after seeding");
            rollupEverything(c);
            checkHourly(c, "after a second rollup over everything (idempotence)");
            checkRollupFollowsUpdates(c);
            checkDirtyQueue(c);
        }
        checkAppRole(tdb, db);
        checkUrls(tdb, db);
        checkConcurrentCreates(tdb);
        checkDeterminism(tdb, cutoff);
        checkFiftyWorkspaces(tdb, cutoff);
        timeBigSeed(tdb, cutoff);
        tdb.dropDatabase(db);

        if (failures.isEmpty()) {
            System.out.printf("OK: all checks passed (%.1f s)%n", secondsSince(t0));
            System.exit(0);
        }
        System.out.println("FAILED: " + failures.size() + " check(s):");
        failures.forEach(f -> System.out.println("  - " + f));
        System.exit(1);
    }

    private static void reportMix(Connection c, OffsetDateTime cutoff) throws SQLException {
        String sql = """
                SELECT count(*) AS total,
                       count(*) FILTER (WHERE provider = 'codex' AND cache_read_tokens > 0
                                          AND input_tokens > 0 AND changed < p.cutoff)
                           AS eligible,
                       count(*) FILTER (WHERE provider = 'codex' AND cache_read_tokens > 0
                                          AND input_tokens > 0 AND changed < p.cutoff
                                          AND input_tokens < cache_read_tokens)
                           AS eligible_clamped,
                       count(*) FILTER (WHERE provider = 'codex' AND cache_read_tokens = 0)
                           AS codex_zero_cache,
                       count(*) FILTER (WHERE provider = 'codex' AND input_tokens = 0)
                           AS codex_zero_input,
                       count(*) FILTER (WHERE provider <> 'codex') AS other_providers,
                       count(*) FILTER (WHERE provider <> 'codex' AND cache_read_tokens > 0)
                           AS other_providers_with_cache,
                       count(*) FILTER (WHERE changed >= p.cutoff) AS changed_after_cutoff,
                       count(*) FILTER (WHERE created_at >= p.cutoff) AS created_after_cutoff,
                       count(*) FILTER (WHERE created_at < p.cutoff AND updated_at >= p.cutoff)
                           AS created_before_updated_after,
                       count(*) FILTER (WHERE updated_at IS NULL AND created_at < p.cutoff)
                           AS null_updated_before_cutoff,
                       count(*) FILTER (WHERE updated_at IS NULL AND created_at >= p.cutoff)
                           AS null_updated_after_cutoff,
                       count(*) FILTER (WHERE provider = 'codex' AND changed >= p.cutoff
                                          AND input_tokens BETWEEN 1 AND cache_read_tokens - 1)
                           AS post_fix_codex_input_below_cache,
                       count(*) FILTER (WHERE changed > now()) AS changed_in_future,
                       min(input_tokens) FILTER (WHERE input_tokens > 0) AS min_input,
                       max(input_tokens) AS max_input,
                       round(avg(output_tokens)) AS avg_output,
                       round(avg(cache_write_tokens) FILTER (WHERE cache_write_tokens > 0))
                           AS avg_cache_write_when_any,
                       count(*) FILTER (WHERE cost_usd_ticks IS NOT NULL) AS with_cost
                  FROM (SELECT *, coalesce(updated_at, created_at) AS changed
                          FROM task_usage) AS tu
                 CROSS JOIN (SELECT ?::timestamptz AS cutoff) AS p
                """;
        Map<String, Long> counts = new LinkedHashMap<>();
        try (PreparedStatement ps = c.prepareStatement(sql)) {
            ps.setObject(1, cutoff);
            try (ResultSet rs = ps.executeQuery()) {
                rs.next();
                ResultSetMetaData md = rs.getMetaData();
                for (int i = 1; i <= md.getColumnCount(); i++) {
                    counts.put(md.getColumnLabel(i), rs.getLong(i));
                }
            }
        }
        long total = counts.get("total");
        System.out.println("task_usage mix:");
        counts.forEach((k, v) -> {
            boolean isCount = !k.startsWith("min_") && !k.startsWith("max_")
                    && !k.startsWith("avg_");
            System.out.printf("  %-34s %,12d%s%n", k, v,
                    isCount && !k.equals("total")
                            ? String.format("  (%5.2f%%)", 100.0 * v / total) : "");
        });
        check(total == ROWS, "task_usage holds " + total + " rows, expected " + ROWS);
        for (String k : List.of("eligible", "eligible_clamped", "codex_zero_cache",
                "codex_zero_input", "other_providers", "other_providers_with_cache",
                "changed_after_cutoff", "created_after_cutoff", "created_before_updated_after",
                "null_updated_before_cutoff", "null_updated_after_cutoff", "with_cost")) {
            check(counts.get(k) > 0, "no rows of kind " + k);
        }
        check(counts.get("changed_in_future") == 0,
                counts.get("changed_in_future") + " rows changed after now()");
        check(counts.get("other_providers").equals(counts.get("other_providers_with_cache")),
                "some non-codex rows have no cache reads");
        check(counts.get("min_input") >= 1 && counts.get("max_input") <= 400_000,
                "input_tokens out of the expected range");

        long buckets = scalar(c, "SELECT count(*) FROM task_usage_hourly");
        long tasks = scalar(c, "SELECT count(*) FROM agent_task_queue");
        long noRuntime = scalar(c,
                "SELECT count(*) FROM agent_task_queue WHERE runtime_id IS NULL");
        long noIssue = scalar(c, "SELECT count(*) FROM agent_task_queue WHERE issue_id IS NULL");
        System.out.printf("  task_usage_hourly rows %,d; tasks %,d (%,d without runtime,"
                + " %,d without issue); issues %,d (%,d without project); agents %,d%n",
                buckets, tasks, noRuntime, noIssue, scalar(c, "SELECT count(*) FROM issue"),
                scalar(c, "SELECT count(*) FROM issue WHERE project_id IS NULL"),
                scalar(c, "SELECT count(*) FROM agent"));
        check(buckets > 0, "task_usage_hourly is empty after seeding");
        check(noRuntime > 0 && noIssue > 0, "expected some tasks without runtime and issue");
    }

    private static void reportWorkspaces(Connection c) throws SQLException {
        String sql = """
                SELECT w.name, count(*) AS rows
                  FROM task_usage tu
                  JOIN agent_task_queue q ON q.id = tu.task_id
                  JOIN agent a ON a.id = q.agent_id
                  JOIN workspace w ON w.id = a.workspace_id
                 GROUP BY w.name
                 ORDER BY rows DESC
                """;
        StringBuilder line = new StringBuilder("  rows per workspace:");
        try (Statement s = c.createStatement(); ResultSet rs = s.executeQuery(sql)) {
            while (rs.next()) {
                line.append(String.format(" %.1f%%", 100.0 * rs.getLong(2) / ROWS));
            }
        }
        System.out.println(line);
    }

    /** task_usage_hourly must equal a fresh aggregation of task_usage. */
    private static void checkHourly(Connection c, String when) throws SQLException {
        long t = System.nanoTime();
        List<String> mismatches = new ArrayList<>();
        try (Statement s = c.createStatement();
             ResultSet rs = s.executeQuery(TestDatabase.HOURLY_MISMATCH_SQL)) {
            while (rs.next()) {
                if (mismatches.size() < 5) {
                    mismatches.add(rs.getString("problem") + " " + rs.getString("bucket_hour")
                            + " " + rs.getString("model") + " input=" + rs.getLong("input_tokens"));
                } else {
                    mismatches.add("...");
                }
            }
        }
        System.out.printf("hourly rollup vs raw rows %s: %d mismatching rows (%.2f s)%n",
                when, mismatches.size(), secondsSince(t));
        check(mismatches.isEmpty(), "task_usage_hourly differs from task_usage " + when + ": "
                + mismatches.subList(0, Math.min(6, mismatches.size())));
    }

    /** A second rollup over a window covering every row must change nothing. */
    private static void rollupEverything(Connection c) throws SQLException {
        long buckets = scalar(c, "SELECT count(*) FROM task_usage_hourly");
        long t = System.nanoTime();
        long touched = rollupInTransaction(c, "'-infinity'", "'infinity'");
        System.out.printf("rollup over (-infinity, infinity): %,d rows touched in %.2f s"
                + " (enable_nestloop off)%n", touched, secondsSince(t));
        check(touched == buckets, "rollup touched " + touched + " rows, expected " + buckets);
    }

    /** Ingestion-style updates are picked up through updated_at, and only inside the window. */
    private static void checkRollupFollowsUpdates(Connection c) throws SQLException {
        OffsetDateTime before = dbNow(c);
        int updated;
        try (Statement s = c.createStatement()) {
            updated = s.executeUpdate("""
                    UPDATE task_usage
                       SET input_tokens = input_tokens + 1, updated_at = clock_timestamp()
                     WHERE id IN (SELECT id FROM task_usage ORDER BY id LIMIT 500)
                    """);
        }
        OffsetDateTime after = dbNow(c).plusSeconds(1);
        long stale = mismatchCount(c);
        check(stale > 0, "updating rows did not make the rollup stale (check is blind)");
        rollupInTransaction(c, "'" + before + "'", "'" + after + "'");
        long left = mismatchCount(c);
        System.out.printf("rollup after updating %d rows: %d mismatching rows before, %d after%n",
                updated, stale, left);
        check(left == 0, "rollup over the update window left " + left + " mismatching rows");
    }

    /** A queued key whose rows are gone must make its bucket disappear, and be drained. */
    private static void checkDirtyQueue(Connection c) throws SQLException {
        try (Statement s = c.createStatement()) {
            // Move every task of one bucket to another runtime behind the rollup's back
            // (there is no trigger in the fixture), queueing the old keys of all their rows
            // first, as the platform's trigger on agent_task_queue would.
            s.execute("""
                    CREATE TEMP TABLE moved AS
                    SELECT h.* FROM task_usage_hourly h
                     ORDER BY h.event_count DESC, h.bucket_hour LIMIT 1
                    """);
            s.execute("""
                    CREATE TEMP TABLE moved_tasks AS
                    SELECT DISTINCT q.id FROM moved m
                      JOIN agent_task_queue q ON q.agent_id = m.agent_id
                                             AND q.runtime_id = m.runtime_id
                      JOIN task_usage tu ON tu.task_id = q.id AND tu.provider = m.provider
                                        AND tu.model = m.model
                                        AND task_usage_hour_bucket(tu.created_at) = m.bucket_hour
                    """);
            s.executeUpdate("""
                    INSERT INTO task_usage_hourly_dirty (bucket_hour, workspace_id, runtime_id,
                                agent_id, project_id, provider, model)
                    SELECT DISTINCT task_usage_hour_bucket(tu.created_at), a.workspace_id,
                           q.runtime_id, q.agent_id, i.project_id, tu.provider, tu.model
                      FROM moved_tasks mt
                      JOIN agent_task_queue q ON q.id = mt.id
                      JOIN agent a ON a.id = q.agent_id
                      LEFT JOIN issue i ON i.id = q.issue_id
                      JOIN task_usage tu ON tu.task_id = q.id
                    """);
            s.executeUpdate("UPDATE agent_task_queue SET runtime_id = gen_random_uuid()"
                    + " WHERE id IN (SELECT id FROM moved_tasks)");
            // The new keys are found through the rows' updated_at.
            s.executeUpdate("UPDATE task_usage SET updated_at = clock_timestamp()"
                    + " WHERE task_id IN (SELECT id FROM moved_tasks)");
        }
        OffsetDateTime to = dbNow(c).plusSeconds(1);
        long stale = mismatchCount(c);
        long touched = rollupInTransaction(c, "'" + to.minusMinutes(5) + "'", "'" + to + "'");
        long left = mismatchCount(c);
        long queued = scalar(c, "SELECT count(*) FROM task_usage_hourly_dirty");
        long oldBucket = scalar(c, """
                SELECT count(*) FROM task_usage_hourly h JOIN moved m
                    ON (h.bucket_hour, h.workspace_id, h.runtime_id, h.agent_id, h.provider,
                        h.model) = (m.bucket_hour, m.workspace_id, m.runtime_id, m.agent_id,
                        m.provider, m.model)
                   AND h.project_id IS NOT DISTINCT FROM m.project_id
                """);
        System.out.printf("dirty queue: %d mismatches before, %d rows touched, old bucket rows"
                + " left %d, queue %d, mismatches after %d%n", stale, touched, oldBucket,
                queued, left);
        check(stale > 0, "moving tasks did not make the rollup stale (check is blind)");
        check(oldBucket == 0, "emptied bucket was not deleted");
        check(queued == 0, "dirty queue not drained");
        check(left == 0, "rollup with a dirty key left " + left + " mismatching rows");
        try (Statement s = c.createStatement()) {
            s.execute("DROP TABLE moved, moved_tasks");
        }
    }

    private static void checkAppRole(TestDatabase tdb, String db) throws SQLException {
        try (Connection c = tdb.appConnection(db); Statement s = c.createStatement()) {
            try (ResultSet rs = s.executeQuery("SELECT current_user")) {
                rs.next();
                check(TestDatabase.APP_USER.equals(rs.getString(1)), "app login is not APP_USER");
            }
            // What the tool needs, undone afterwards.
            c.setAutoCommit(false);
            s.executeUpdate("UPDATE task_usage SET updated_at = now() WHERE id IN"
                    + " (SELECT id FROM task_usage LIMIT 10)");
            s.execute("SELECT rollup_task_usage_hourly_window(now() - interval '1 minute',"
                    + " now() + interval '1 minute')");
            s.execute("CREATE TABLE public.backfill_probe (id int)");
            s.execute("ANALYZE task_usage");
            c.rollback();
            System.out.println("app role: login with password OK; can UPDATE task_usage, run the"
                    + " rollup, CREATE TABLE in public, ANALYZE");
        } catch (SQLException e) {
            check(false, "APP_USER cannot do what the tool needs: " + e.getMessage());
        }

        Properties wrong = new Properties();
        wrong.setProperty("user", TestDatabase.APP_USER);
        wrong.setProperty("password", TestDatabase.APP_PASSWORD + "x");
        try (Connection c = DriverManager.getConnection(tdb.jdbcUrl(db), wrong)) {
            String msg = "APP_USER logged in with a wrong password";
            if (tdb.serverKind().equals("external")) {
                System.out.println("WARNING: " + msg + " (TEST_DATABASE_URL server's pg_hba)");
            } else {
                check(false, msg);
            }
        } catch (SQLException e) {
            System.out.println("app role: wrong password refused (SQLState " + e.getSQLState()
                    + ")");
            check("28P01".equals(e.getSQLState()), "wrong password failed with SQLState "
                    + e.getSQLState() + ", expected 28P01: " + e.getMessage());
        }
    }

    private static void checkUrls(TestDatabase tdb, String db) {
        String jdbc = tdb.jdbcUrl(db);
        String libpq = tdb.appLibpqUrl(db);
        check(!jdbc.contains(TestDatabase.APP_PASSWORD) && !jdbc.contains("password"),
                "jdbcUrl carries credentials");
        check(!tdb.describe().contains(TestDatabase.APP_PASSWORD), "describe() leaks a password");
        String encoded = libpq.substring("postgres://".length(), libpq.lastIndexOf('@'));
        String password = TestDatabase.percentDecode(encoded.substring(encoded.indexOf(':') + 1));
        check(password.equals(TestDatabase.APP_PASSWORD), "appLibpqUrl password round trip");
        check(libpq.endsWith("/" + db + "?sslmode=disable"), "appLibpqUrl shape: " + libpq);
        System.out.println("urls: " + jdbc + " ; " + libpq.replace(encoded.substring(
                encoded.indexOf(':') + 1), "****"));
    }

    /** Tests may create databases from several threads at once. */
    private static void checkConcurrentCreates(TestDatabase tdb) throws Exception {
        List<Thread> threads = new ArrayList<>();
        List<String> names = java.util.Collections.synchronizedList(new ArrayList<>());
        List<Throwable> errors = java.util.Collections.synchronizedList(new ArrayList<>());
        for (int i = 0; i < 4; i++) {
            final boolean empty = i % 2 == 1;
            Thread t = new Thread(() -> {
                try {
                    names.add(empty ? tdb.createEmptyDatabase("parallel")
                            : tdb.createDatabase("parallel"));
                } catch (Throwable e) {
                    errors.add(e);
                }
            });
            threads.add(t);
            t.start();
        }
        for (Thread t : threads) {
            t.join();
        }
        for (String name : names) {
            // A leftover session must not keep a database from being dropped.
            Connection lingering = tdb.appConnection(name);
            tdb.dropDatabase(name);
            lingering.close();
        }
        System.out.println("concurrency: created " + names.size() + " databases from 4 threads,"
                + " dropped them with a session still open; errors: " + errors);
        check(errors.isEmpty() && names.size() == 4, "concurrent database creation failed: "
                + errors);
    }

    /** Same seed, same starting state: same rows, ids included. */
    private static void checkDeterminism(TestDatabase tdb, OffsetDateTime cutoff)
            throws SQLException {
        String fingerprint = "SELECT md5(string_agg(id::text || task_id || provider || model"
                + " || input_tokens || cache_read_tokens || created_at"
                + " || coalesce(updated_at::text, '-'), ',' ORDER BY id)) FROM task_usage";
        String[] prints = new String[2];
        for (int i = 0; i < 2; i++) {
            String db = tdb.createDatabase("determinism");
            tdb.seedSampleData(db, 5_000, cutoff, 5);
            try (Connection c = tdb.adminConnection(db); Statement s = c.createStatement();
                 ResultSet rs = s.executeQuery(fingerprint)) {
                rs.next();
                prints[i] = rs.getString(1);
            }
            tdb.dropDatabase(db);
        }
        System.out.println("determinism: two seeds of 5,000 rows "
                + (prints[0].equals(prints[1]) ? "identical" : "DIFFER"));
        check(prints[0].equals(prints[1]), "seeding is not deterministic");
    }

    /** The Zipf-like sizes: with 50 workspaces one should hold about 2% of the rows. */
    private static void checkFiftyWorkspaces(TestDatabase tdb, OffsetDateTime cutoff)
            throws SQLException {
        String db = tdb.createDatabase("fifty");
        int rows = 100_000;
        tdb.seedSampleData(db, rows, cutoff, 50);
        List<Double> shares = new ArrayList<>();
        try (Connection c = tdb.adminConnection(db); Statement s = c.createStatement();
             ResultSet rs = s.executeQuery("""
                     SELECT count(*) FROM task_usage tu
                       JOIN agent_task_queue q ON q.id = tu.task_id
                       JOIN agent a ON a.id = q.agent_id
                      GROUP BY a.workspace_id ORDER BY 1 DESC
                     """)) {
            while (rs.next()) {
                shares.add(100.0 * rs.getLong(1) / rows);
            }
        }
        double nearest = shares.stream().min((a, b) -> Double.compare(Math.abs(a - 2),
                Math.abs(b - 2))).orElse(0.0);
        System.out.printf("50 workspaces: largest %.1f%%, #11 %.2f%%, smallest %.2f%%,"
                + " nearest to 2%%: %.2f%%%n", shares.get(0), shares.get(10),
                shares.get(shares.size() - 1), nearest);
        check(shares.size() == 50, "expected 50 workspaces with rows, got " + shares.size());
        check(Math.abs(nearest - 2.0) < 0.2, "no workspace holds about 2% of the rows");
        tdb.dropDatabase(db);
    }

    private static void timeBigSeed(TestDatabase tdb, OffsetDateTime cutoff) throws SQLException {
        int rows = Integer.parseInt(System.getenv().getOrDefault("SELFCHECK_BIG_ROWS",
                "1000000"));
        if (rows <= 0) {
            System.out.println("timing of a big seed skipped (SELFCHECK_BIG_ROWS=0)");
            return;
        }
        String db = tdb.createDatabase("big");
        long t = System.nanoTime();
        tdb.seedSampleData(db, rows, cutoff, WORKSPACES);
        double seconds = secondsSince(t);
        try (Connection c = tdb.adminConnection(db)) {
            System.out.printf("seeded %,d rows in %.1f s (%,d hourly buckets; task_usage %s)%n",
                    rows, seconds, scalar(c, "SELECT count(*) FROM task_usage_hourly"),
                    string(c, "SELECT pg_size_pretty(pg_total_relation_size('task_usage'))"));
        }
        tdb.dropDatabase(db);
    }

    // ----------------------------------------------------------------------------------

    private static long rollupInTransaction(Connection c, String from, String to)
            throws SQLException {
        // As the tool does it: fresh statistics, then the call with nested loops off, since
        // this function's delete-emptied step degrades badly under a nested-loop plan.
        boolean auto = c.getAutoCommit();
        try (Statement s = c.createStatement()) {
            s.execute("ANALYZE task_usage");
            c.setAutoCommit(false);
            s.execute("SET LOCAL enable_nestloop = off");
            long touched;
            try (ResultSet rs = s.executeQuery("SELECT rollup_task_usage_hourly_window("
                    + from + "::timestamptz, " + to + "::timestamptz)")) {
                rs.next();
                touched = rs.getLong(1);
            }
            c.commit();
            return touched;
        } catch (SQLException e) {
            c.rollback();
            throw e;
        } finally {
            c.setAutoCommit(auto);
        }
    }

    private static long mismatchCount(Connection c) throws SQLException {
        return scalar(c, "SELECT count(*) FROM (" + TestDatabase.HOURLY_MISMATCH_SQL + ") m");
    }

    private static OffsetDateTime dbNow(Connection c) throws SQLException {
        try (Statement s = c.createStatement();
             ResultSet rs = s.executeQuery("SELECT clock_timestamp()")) {
            rs.next();
            return rs.getObject(1, OffsetDateTime.class);
        }
    }

    private static long scalar(Connection c, String sql) throws SQLException {
        try (Statement s = c.createStatement(); ResultSet rs = s.executeQuery(sql)) {
            rs.next();
            return rs.getLong(1);
        }
    }

    private static String string(Connection c, String sql) throws SQLException {
        try (Statement s = c.createStatement(); ResultSet rs = s.executeQuery(sql)) {
            rs.next();
            return rs.getString(1);
        }
    }

    private static void check(boolean ok, String failure) {
        if (!ok) {
            failures.add(failure);
            System.out.println("CHECK FAILED: " + failure);
        }
    }

    private static double secondsSince(long nanos) {
        return (System.nanoTime() - nanos) / 1e9;
    }
}
